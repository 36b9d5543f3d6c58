"""Piano rolls on the 16th-note step grid (thin wrapper over ``_kernels.roll``)."""

from __future__ import annotations

import numpy as np

from chiptuner._kernels import roll as _k
from chiptuner.errors import ParameterError

__all__ = ["piano_roll"]


def piano_roll(
    start_step: np.ndarray,
    end_step: np.ndarray,
    pitch: np.ndarray,
    *,
    n_steps: int | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise notes to a time-major piano roll with an onset plane.

    Parameters
    ----------
    start_step, end_step : np.ndarray [shape=(N,), dtype=int64]
        Note onset and exclusive release step (see ``timebase.quantize_notes``).
    pitch : np.ndarray [shape=(N,), dtype=int16]
    n_steps : int, optional
        Length T of the roll; by default the last release step. Notes beyond it are cut.
    out : tuple of two np.ndarray [shape=(>=T, 128), dtype=uint8], optional
        Buffers to write into (their first T rows are returned as views). A batch job that
        reuses them skips allocating and page-faulting two fresh rolls per song, which is
        most of the cost of rasterising.

    Returns
    -------
    roll : np.ndarray [shape=(T, 128), dtype=uint8]
        1 where a pitch sounds at a step.
    onset : np.ndarray [shape=(T, 128), dtype=uint8]
        1 where a note of that pitch starts at that step.
    """
    start_step = np.ascontiguousarray(start_step, dtype=np.int64)
    end_step = np.ascontiguousarray(end_step, dtype=np.int64)
    pitch = np.ascontiguousarray(pitch, dtype=np.int16)
    if not (start_step.shape == end_step.shape == pitch.shape) or start_step.ndim != 1:
        raise ParameterError(
            f"start_step {start_step.shape}, end_step {end_step.shape} and pitch {pitch.shape} "
            "must be 1-D arrays of one length"
        )
    if n_steps is None:
        n_steps = int(end_step.max()) if len(end_step) else 0
    if n_steps < 0:
        raise ParameterError(f"n_steps is {n_steps}; it must be >= 0")
    if out is None:
        roll = np.empty((n_steps, 128), dtype=np.uint8)
        onset = np.empty((n_steps, 128), dtype=np.uint8)
    else:
        roll, onset = out
        for buffer in out:
            if buffer.dtype != np.uint8 or buffer.ndim != 2 or buffer.shape[0] < n_steps or buffer.shape[1] != 128:
                raise ParameterError(
                    f"out buffer has shape {buffer.shape} and dtype {buffer.dtype}; "
                    f"it must be uint8 with at least {n_steps} rows of 128"
                )
            if not buffer.flags.c_contiguous:
                raise ParameterError("out buffers must be C-contiguous (allocate them with np.empty)")
        roll, onset = roll[:n_steps], onset[:n_steps]
    _k.rasterize(start_step, end_step, pitch, roll, onset)
    return roll, onset
