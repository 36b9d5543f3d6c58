"""Training data: converted shards in memory or memory-mapped, transposition on the fly, and a split by song.

``load_shards`` reads what ``chiptuner convert`` wrote into memory; ``open_cache`` maps it
from uncompressed copies instead (written once, beside the shards), so a corpus larger than
memory can be trained on; ``transpose`` shifts one song's arrays by -5..+6 semitones when a
batch is made (transposed copies are never stored); ``split_by_song`` keeps every version of
a song on one side of a train/test split.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import mmap
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chiptuner.errors import OutputError, ParameterError
from chiptuner.model.arranger import FIRST_NOTE, VOICE_HIGH, VOICE_LOW, voices_to_tokens
from chiptuner.types import VOICE_NAMES
from chiptuner.voices import VOICE_RANGES

__all__ = [
    "Corpus",
    "MappedCorpus",
    "load_shards",
    "open_cache",
    "CACHE_NAME",
    "transpose",
    "safe_shifts",
    "song_group",
    "split_by_song",
    "split_parts",
    "model_songs",
    "open_conversion",
    "songs_with_ids",
    "DEFAULT_TEST_SIZE",
    "DEFAULT_VAL_SIZE",
    "SHIFTS",
    "MELODY_KEYS",
    "shift_tokens",
]

logger = logging.getLogger(__name__)

#: The transpositions used for augmentation, in semitones.
SHIFTS = np.arange(-5, 7)
#: Per-step melody pitch arrays that move with a transposition (anywhere in 0-127).
MELODY_KEYS = ("melody_pitch", "full_pitch")
_MIDI_RANGE = (0, 127)


@dataclass(frozen=True, eq=False)
class Corpus:
    """Many songs' training arrays, concatenated along the step axis.

    Attributes
    ----------
    song_ids : np.ndarray [shape=(S,), dtype=str]
        Relative path of each song's file; also the key of ``split_by_song``.
    offsets : np.ndarray [shape=(S + 1,), dtype=int64]
        Song i is rows ``offsets[i]:offsets[i + 1]`` of every per-step array.
    steps : dict of str to np.ndarray
        Per-step arrays, each [shape=(offsets[-1], ...)], read-only (see
        ``pipeline.STEP_KEYS``).
    songs : dict of str to np.ndarray
        Per-song scalars, each [shape=(S,)], read-only (see ``pipeline.SONG_KEYS``).
    """

    song_ids: np.ndarray
    offsets: np.ndarray
    steps: dict[str, np.ndarray]
    songs: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.song_ids)

    @property
    def n_steps(self) -> int:
        """Steps of all songs together."""
        return int(self.offsets[-1])

    def song(self, index: int) -> dict[str, np.ndarray]:
        """Return one song's arrays (read-only views), per-step and scalar keys together."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"song {index} of a corpus of {len(self)} songs")
        index %= len(self)
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        out = {key: array[start:end] for key, array in self.steps.items()}
        out.update({key: array[index] for key, array in self.songs.items()})
        return out

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (self.song(i) for i in range(len(self)))


def _shard_names(folder: Path) -> list[str]:
    report = folder / "report.json"
    if report.exists():
        # The report lists the finished shards; a shard it does not name is left by a killed run.
        return list(json.loads(report.read_text()).get("shards", []))
    return sorted(name for name in os.listdir(folder) if re.fullmatch(r"shard-\d+\.npz", name))


def _checked_shard_names(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise ParameterError(f"{folder}: no such folder; pass the output folder of `chiptuner convert`")
    names = _shard_names(folder)
    if not names:
        raise ParameterError(f"{folder}: no shards; run `chiptuner convert SRC -o {folder}` first")
    return names


def load_shards(out_dir: str | os.PathLike) -> Corpus:
    """Load the shards that ``chiptuner convert`` wrote into one ``Corpus``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The conversion's output folder. The shards its ``report.json`` lists are loaded
        (every ``shard-*.npz`` where there is no report).

    Returns
    -------
    Corpus

    Raises
    ------
    ParameterError
        The folder does not exist or holds no shard, or shards disagree on their keys.
    """
    folder = Path(out_dir)
    names = _checked_shard_names(folder)
    ids, lengths = [], []
    steps: dict[str, list[np.ndarray]] = {}
    songs: dict[str, list[np.ndarray]] = {}
    for name in names:
        with np.load(folder / name, allow_pickle=False) as shard:
            step_keys = shard["step_keys"].tolist()
            song_keys = shard["song_keys"].tolist()
            if steps and (set(step_keys) != set(steps) or set(song_keys) != set(songs)):
                raise ParameterError(f"{folder / name}: keys differ from the other shards; convert into one folder")
            ids.append(shard["song_id"])
            lengths.append(np.diff(shard["offsets"]))
            for key in step_keys:
                steps.setdefault(key, []).append(shard[key])
            for key in song_keys:
                songs.setdefault(key, []).append(shard[key])
    lengths_all = np.concatenate(lengths)
    offsets = np.concatenate(([0], np.cumsum(lengths_all))).astype(np.int64)
    corpus = Corpus(
        song_ids=_readonly(np.concatenate(ids)),
        offsets=_readonly(offsets),
        steps={key: _readonly(np.concatenate(parts)) for key, parts in steps.items()},
        songs={key: _readonly(np.concatenate(parts)) for key, parts in songs.items()},
    )
    logger.info("loaded %d songs, %d steps from %d shards in %s", len(corpus), corpus.n_steps, len(names), folder)
    return corpus


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


# ----------------------------------------------------------------------------- training cache

#: The folder inside a conversion folder that holds ``open_cache``'s uncompressed copies.
CACHE_NAME = ".train-cache"
#: Layout version of the cache; a cache of another version is rebuilt.
_CACHE_FORMAT = 1
_MANIFEST = "manifest.json"


@dataclass(frozen=True, eq=False)
class MappedCorpus(Corpus):
    """A ``Corpus`` whose per-step arrays are read-only memory maps of ``open_cache``'s files.

    Song ids, offsets and the per-song scalars are in memory (a few bytes per song); the
    per-step arrays and ``tokens`` are mapped, so only the pages a reader touches are read.

    Attributes
    ----------
    tokens : np.ndarray [shape=(offsets[-1], 4), dtype=int16]
        ``model.arranger.voices_to_tokens`` of every song, each encoded on its own.
    folder : Path
        The cache folder the arrays are mapped from.
    """

    tokens: np.ndarray
    folder: Path
    _maps: tuple[mmap.mmap, ...] = field(repr=False)

    def release(self) -> None:
        """Drop the mapped pages this process has touched from its resident memory.

        Pages read through a map stay counted in the process's resident memory until the
        map goes, although the kernel can take them back at any time; dropping them after
        each pass over the data keeps the resident memory of a long training independent of
        the corpus size. The arrays stay valid: a page read again comes back from the page
        cache or the file. Does nothing where the platform has no ``madvise``.
        """
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if advice is None:
            return
        for mapped in self._maps:
            mapped.madvise(advice)


def _fingerprint(folder: Path, names: list[str]) -> dict:
    """What a cache was made from: the shards' names, sizes and modification times, and the layout."""
    shards = []
    for name in names:
        stat = (folder / name).stat()
        shards.append([name, stat.st_size, stat.st_mtime_ns])
    return {"format": _CACHE_FORMAT, "shards": shards}


def open_cache(out_dir: str | os.PathLike, *, cache_root: str | os.PathLike | None = None) -> MappedCorpus:
    """Memory-map the shards of a conversion folder, writing their uncompressed copies on first use.

    The first call writes every per-step array of the shards ``load_shards`` reads (and
    the voices' tokens) as one uncompressed ``.npy`` each into ``cache_root/KEY/``, shard
    by shard, so the whole corpus is never in memory; ``KEY`` names the shards' names, sizes
    and modification times, so a conversion that has changed since gets a new cache (the
    old one is removed once the new one is complete). The cache is written into a temporary
    folder and renamed into place, so a killed run leaves no half cache in use.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The conversion's output folder.
    cache_root : str or os.PathLike, optional
        Where caches live; ``out_dir/.train-cache`` by default.

    Returns
    -------
    MappedCorpus
        The same songs, ids, offsets and arrays as ``load_shards(out_dir)``.

    Raises
    ------
    ParameterError
        As ``load_shards``.
    OutputError
        The cache could not be written (a full disk, a read-only folder).
    """
    folder = Path(out_dir)
    names = _checked_shard_names(folder)
    fingerprint = _fingerprint(folder, names)
    key = hashlib.sha256(json.dumps(fingerprint).encode()).hexdigest()[:16]
    root = Path(cache_root) if cache_root is not None else folder / CACHE_NAME
    target = root / key
    if not (target / _MANIFEST).is_file():
        try:
            _build_cache(folder, names, fingerprint, root, target)
        except OSError as error:
            cause = error.strerror or str(error)
            fix = "free space" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "fix that"
            raise OutputError(
                f"{root}: {cause[:1].lower() + cause[1:]} (errno {error.errno}) while writing the training cache; "
                f"{fix} and run again"
            ) from None
    return _open_cache_folder(target)


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # elsewhere os.kill would end the process: keep its build
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        pass
    return True


def _build_cache(folder: Path, names: list[str], fingerprint: dict, root: Path, target: Path) -> None:
    """Write the cache of ``names`` into ``target`` through a temporary folder in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in root.iterdir():  # builds left by killed runs
        build_pid = re.fullmatch(r"\.build-(\d+)", entry.name)
        if build_pid and not _pid_alive(int(build_pid.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
    tmp = root / f".build-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        # First pass: the small per-song arrays, which give the totals the .npy headers need.
        ids, lengths = [], []
        songs: dict[str, list[np.ndarray]] = {}
        layout: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        for name in names:
            with np.load(folder / name, allow_pickle=False) as shard:
                step_keys, song_keys = shard["step_keys"].tolist(), shard["song_keys"].tolist()
                if ids and (set(step_keys) != set(layout) or set(song_keys) != set(songs)):
                    raise ParameterError(f"{folder / name}: keys differ from the other shards; convert into one folder")
                if not layout:
                    for key in step_keys:
                        array = shard[key]
                        layout[key] = (array.dtype, array.shape[1:])
                ids.append(shard["song_id"])
                lengths.append(np.diff(shard["offsets"]))
                for key in song_keys:
                    songs.setdefault(key, []).append(shard[key])
        lengths_all = np.concatenate(lengths)
        offsets = np.concatenate(([0], np.cumsum(lengths_all))).astype(np.int64)
        n_steps = int(offsets[-1])
        np.save(tmp / "song_id.npy", np.concatenate(ids))
        np.save(tmp / "offsets.npy", offsets)
        for key, parts in songs.items():
            np.save(tmp / f"song.{key}.npy", np.concatenate(parts))
        layout["tokens"] = (np.dtype(np.int16), (4,))
        # Second pass: the per-step arrays, one shard at a time, appended to their files.
        with contextlib.ExitStack() as stack:
            files = {key: stack.enter_context(open(tmp / f"step.{key}.npy", "wb")) for key in layout}
            for key, (dtype, trailing) in layout.items():
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                          "shape": (n_steps, *trailing)}  # fmt: skip
                np.lib.format.write_array_header_1_0(files[key], header)
            for name in names:
                with np.load(folder / name, allow_pickle=False) as shard:
                    for key, (dtype, trailing) in layout.items():
                        if key == "tokens":
                            array = _shard_tokens(shard)
                        else:
                            array = shard[key]
                        if array.dtype != dtype or array.shape[1:] != trailing:
                            raise ParameterError(
                                f"{folder / name}: {key} is {array.dtype} {array.shape[1:]}, unlike the other "
                                "shards; convert into one folder"
                            )
                        files[key].write(np.ascontiguousarray(array).data)
            for file in files.values():
                file.flush()
                os.fsync(file.fileno())
        manifest = {**fingerprint, "songs": len(lengths_all), "steps": n_steps, "step_keys": list(layout)[:-1],
                    "song_keys": list(songs)}  # fmt: skip
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1))
        try:
            tmp.rename(target)
        except OSError:
            if not (target / _MANIFEST).is_file():
                raise
            # Another run built the same cache meanwhile: theirs is as good as ours.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for entry in root.iterdir():  # caches of earlier conversions; a reader's maps outlive the unlink
        if entry != target and not entry.name.startswith(".build-"):
            shutil.rmtree(entry, ignore_errors=True)
    logger.info("wrote the training cache of %d songs, %d steps into %s", len(lengths_all), n_steps, target)


def _shard_tokens(shard: Mapping[str, np.ndarray]) -> np.ndarray:
    """Tokens (N, 4) of one shard's songs, each song encoded on its own."""
    offsets = shard["offsets"]
    pitch, onset = shard["voice_pitch"], shard["voice_onset"]
    out = np.empty((int(offsets[-1]), 4), dtype=np.int16)
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        out[start:end] = voices_to_tokens(pitch[start:end], onset[start:end])
    return out


def _map_npy(path: Path) -> tuple[np.ndarray, mmap.mmap]:
    """A read-only array over the data of a ``.npy`` file, and its map (for ``MappedCorpus.release``)."""
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(file)
        if fortran_order:
            raise ParameterError(f"{path}: not a training cache file; delete {path.parent} to rebuild it")
        offset = file.tell()
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    array = np.frombuffer(mapped, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)
    return array, mapped


def _open_cache_folder(target: Path) -> MappedCorpus:
    manifest = json.loads((target / _MANIFEST).read_text())
    steps, maps = {}, []
    for key in [*manifest["step_keys"], "tokens"]:
        array, mapped = _map_npy(target / f"step.{key}.npy")
        steps[key] = array
        maps.append(mapped)
    tokens = steps.pop("tokens")
    corpus = MappedCorpus(
        song_ids=_readonly(np.load(target / "song_id.npy")),
        offsets=_readonly(np.load(target / "offsets.npy")),
        steps=steps,
        songs={key: _readonly(np.load(target / f"song.{key}.npy")) for key in manifest["song_keys"]},
        tokens=tokens,
        folder=target,
        _maps=tuple(maps),
    )
    logger.info("mapped %d songs, %d steps from %s", len(corpus), corpus.n_steps, target)
    return corpus


def _shift(pitch: np.ndarray, semitones: int, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """Shifted pitches (rests stay -1) and where an octave fold was needed."""
    pitch = np.asarray(pitch, dtype=np.int16)
    sounding = pitch >= 0
    inside = sounding & (pitch >= low) & (pitch <= high)
    moved = (pitch + semitones).astype(np.int16)
    # In range before, in range after: fold by octaves. Out of range before: shift as is,
    # folded only to stay a MIDI key.
    lo = np.where(inside, low, _MIDI_RANGE[0])
    hi = np.where(inside, high, _MIDI_RANGE[1])
    folded = moved.copy()
    while True:
        over, under = sounding & (folded > hi), sounding & (folded < lo)
        if not (over.any() or under.any()):
            break
        folded[over] -= 12
        folded[under] += 12
    out = np.where(sounding, folded, pitch).astype(np.int16)
    return out, sounding & (folded != moved)


def _check_shift(semitones: int) -> int:
    if isinstance(semitones, (bool, np.bool_)) or not isinstance(semitones, (int, np.integer)):
        raise ParameterError(f"semitones is {semitones!r}; it must be an integer from -5 to 6")
    if not SHIFTS[0] <= semitones <= SHIFTS[-1]:
        raise ParameterError(f"semitones is {semitones}; transpose by -5 to 6 (every key is then reached once)")
    return int(semitones)


def _shift_all(arrays: Mapping[str, np.ndarray], semitones: int) -> tuple[dict[str, np.ndarray], bool]:
    out = dict(arrays)
    folded_any = False
    for key in MELODY_KEYS:
        if key in arrays:
            out[key], folded = _shift(arrays[key], semitones, *_MIDI_RANGE)
            folded_any |= bool(folded.any())
    if "voice_pitch" in arrays:
        voices = np.array(arrays["voice_pitch"], dtype=np.int16)
        for column, name in enumerate(VOICE_NAMES):
            if name in VOICE_RANGES:  # the noise voice holds drum keys: never shifted
                voices[:, column], folded = _shift(voices[:, column], semitones, *VOICE_RANGES[name])
                folded_any |= bool(folded.any())
        out["voice_pitch"] = voices
    return out, folded_any


def transpose(arrays: Mapping[str, np.ndarray], semitones: int) -> dict[str, np.ndarray]:
    """Shift one song's melody and pitched voices by a number of semitones.

    Parameters
    ----------
    arrays : mapping of str to np.ndarray
        One song's arrays (``Corpus.song(i)`` or ``pipeline.song_arrays``), or a slice of them.
    semitones : int
        From -5 to 6.

    Returns
    -------
    dict of str to np.ndarray
        New ``melody_pitch``, ``full_pitch`` and ``voice_pitch`` arrays; every other
        array (onsets, buttons, bar positions, scalars) is the input's own object, since a
        transposition does not change it. The input is not modified.

    Notes
    -----
    Rests (-1) stay rests and the noise voice (drum keys) is never shifted. A pitched
    voice's note inside its ``voices.VOICE_RANGES`` range that the shift carries outside is
    folded back by one octave (the reduction folds voices the same way), so the output
    stays inside the ranges; a note already outside its range (not made by
    ``reduce_voices``) is shifted without folding. Melody pitches are folded only to stay
    MIDI keys 0-127. Where no folding happened, ``transpose(transpose(a, s), -s)`` gives
    back ``a``; ``safe_shifts`` lists the shifts that need no folding.
    """
    return _shift_all(arrays, _check_shift(semitones))[0]


def safe_shifts(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Return the shifts in ``SHIFTS`` that ``transpose`` makes without any octave fold.

    Returns
    -------
    np.ndarray [shape=(K,), dtype=int64]
        Always holds 0.
    """
    return np.array([s for s in SHIFTS.tolist() if not _shift_all(arrays, s)[1]], dtype=np.int64)


def song_group(song_id: str) -> str:
    """Name the song a file belongs to, so that versions of one song share a group.

    Folders named ``versions``, ``melody`` or ``chords`` are dropped (POP909 keeps
    alternative arrangements in ``NNN/versions/NNN-vK.mid``; Nottingham has the same tune
    in ``MIDI/``, ``MIDI/melody/`` and ``MIDI/chords/``), as are a ``-vK`` version suffix
    and the file ending; the rest is lower-cased.

    Examples
    --------
    >>> song_group("pop909/POP909/001/versions/001-v2.mid")
    'pop909/pop909/001/001'
    >>> song_group("nottingham/MIDI/melody/ashover1.mid")
    'nottingham/midi/ashover1'
    """
    parts = song_id.replace("\\", "/").split("/")
    folders = [part for part in parts[:-1] if part.lower() not in ("versions", "melody", "chords")]
    stem = re.sub(r"-v\d+$", "", parts[-1].rsplit(".", 1)[0] if "." in parts[-1] else parts[-1])
    return "/".join([*folders, stem]).lower()


def split_by_song(
    song_ids: Sequence[str] | np.ndarray, *, test_size: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split songs into train and test so that no song (``song_group``) is on both sides.

    Parameters
    ----------
    song_ids : sequence of str [shape=(S,)]
    test_size : float
        Fraction of the song groups put in the test set, between 0 and 1.
    seed : int

    Returns
    -------
    train_index, test_index : np.ndarray [dtype=int64]
        Indices into ``song_ids``, sorted; together they cover every song once.
    """
    if not 0.0 < test_size < 1.0:
        raise ParameterError(f"test_size is {test_size!r}; it must be a fraction between 0 and 1")
    groups = np.array([song_group(str(song_id)) for song_id in song_ids])
    if len(np.unique(groups)) < 2:
        raise ParameterError(f"{len(groups)} songs in {len(np.unique(groups))} group(s); a split needs 2 songs or more")
    # sklearn costs hundreds of ms at import: only the split pays for it.
    from sklearn.model_selection import GroupShuffleSplit  # noqa: PLC0415

    splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train, test = next(splitter.split(np.zeros(len(groups)), groups=groups))
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)


#: The held-out shares of a training split (``chiptuner train``'s defaults).
DEFAULT_TEST_SIZE = 0.1
DEFAULT_VAL_SIZE = 0.05


def split_parts(
    song_ids: Sequence[str] | np.ndarray,
    *,
    test_size: float = DEFAULT_TEST_SIZE,
    val_size: float = DEFAULT_VAL_SIZE,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Song indices of the train, validation and test parts of a training split, by song group.

    The test part is ``split_by_song(test_size, seed)``; the validation part is split off
    the rest the same way (seed + 1), ``val_size`` being a share of all songs.
    """
    ids = np.asarray(song_ids)
    rest, test = split_by_song(ids, test_size=test_size, seed=seed)
    val_fraction = val_size / (1.0 - test_size)
    train_in_rest, val_in_rest = split_by_song(ids[rest], test_size=val_fraction, seed=seed + 1)
    return {"train": rest[train_in_rest], "val": rest[val_in_rest], "test": test}


def model_songs(model, song_ids: Sequence[str] | np.ndarray, part: str, folder: str | os.PathLike) -> np.ndarray:
    """Indices of a model's ``"val"`` or ``"test"`` songs among ``song_ids`` (a conversion's songs).

    ``model`` is an ``ArrangerModel``. The songs it lists (``metadata["val_songs"]``,
    ``["test_songs"]``) are what stays true when a conversion gained or lost songs since
    training (a remade split would put training songs in the part); a model that lists
    none has its split remade from its training configuration, with a warning. Raises
    ``ParameterError`` when none of the listed songs is in ``folder``.
    """
    listed = model.metadata.get(f"{part}_songs")
    if listed is not None:
        wanted = {str(song) for song in listed}
        found = np.array([i for i, song in enumerate(song_ids) if str(song) in wanted], dtype=np.int64)
        if len(found) == 0:
            raise ParameterError(
                f"{folder}: none of the model's {len(wanted)} {_PART_NAMES[part]} songs is in this folder; "
                "pass the conversion the model was trained on"
            )
        if len(found) < len(wanted):
            logger.info("%s: %d of the model's %d %s songs are not in this folder", folder, len(wanted) - len(found),
                        len(wanted), _PART_NAMES[part])  # fmt: skip
        return found
    logger.warning(
        "%s: the model does not list its %s songs; the split is remade from its seed, which is only the "
        "model's own if this folder holds exactly the songs it was trained from",
        folder,
        _PART_NAMES[part],
    )
    saved = model.metadata.get("config", {})
    split = {name: saved[name] for name in ("seed", "test_size", "val_size") if name in saved}
    return split_parts(song_ids, **split)[part]


_PART_NAMES = {"val": "validation", "test": "test"}


def songs_with_ids(corpus: Corpus, indices: Sequence[int] | np.ndarray) -> list[dict]:
    """The songs at ``indices``: each ``corpus.song(i)`` plus its ``song_id``."""
    return [{**corpus.song(int(i)), "song_id": str(corpus.song_ids[int(i)])} for i in indices]


def open_conversion(converted_dir: str | os.PathLike, model_path: str | os.PathLike) -> MappedCorpus:
    """A conversion mapped from its cache: in the conversion folder, or beside the model if that is read-only."""
    model_path = Path(model_path)
    if os.access(converted_dir, os.W_OK) or not Path(converted_dir).is_dir():
        return open_cache(converted_dir)
    return open_cache(converted_dir, cache_root=model_path.with_name(model_path.name + ".train-cache"))


#: Folder names of the corpora we know, and the label (and default style) each goes under.
_CORPUS_LABELS = {
    "vgmusic_nes_gb": "chip",
    "pop909": "pop",
    "bach_chorales": "chorale",
    "nottingham": "folk",
}


def source_folder(song_id: str) -> str:
    """The first folder of a song id: the source folder it was converted from ("" for none)."""
    parts = str(song_id).replace("\\", "/").split("/")
    return parts[0] if len(parts) >= 2 else ""


def corpus_label(song_id: str) -> str:
    """The corpus a song is reported under: its first folder, named ``chip`` etc. where we know it.

    ``vgmusic_nes_gb/...`` is ``chip``, ``pop909/...`` ``pop``, ``bach_chorales/...``
    ``chorale``, ``nottingham/...`` ``folk``; any other first folder is its own label, and
    a song outside any folder is ``files``. It is also a song's default training style.
    """
    folder = source_folder(song_id)
    if not folder:
        return "files"
    return _CORPUS_LABELS.get(folder.lower(), folder)


def style_of(model, song_id: str) -> str | None:
    """The style a song of a corpus was trained as (its source folder's), None where the model has no such style.

    ``model`` is an ``ArrangerModel``: its ``style_sources`` (``chiptuner train --style``)
    name a folder's style, else the folder's corpus label does.
    """
    name = model.metadata.get("style_sources", {}).get(source_folder(song_id), corpus_label(song_id))
    return name if name in model.styles else None


def shift_tokens(tokens: np.ndarray, semitones: int) -> np.ndarray:
    """Transpose voice tokens (``model.arranger.voices_to_tokens``) by a number of semitones.

    Parameters
    ----------
    tokens : np.ndarray [shape=(..., 4), dtype=int]
    semitones : int
        From -5 to 6.

    Returns
    -------
    np.ndarray [shape=(..., 4), dtype=int64]
        New notes of pulse1, pulse2 and triangle move, folded by octaves into their ranges
        as ``transpose`` folds pitches; rests, holds and the noise voice stay.
    """
    semitones = _check_shift(semitones)
    out = np.array(tokens, dtype=np.int64)
    if out.ndim < 1 or out.shape[-1] != 4:
        raise ParameterError(f"tokens have shape {out.shape}; expected (..., 4)")
    for v in range(3):
        column = out[..., v]
        note = column >= FIRST_NOTE
        pitch = column - FIRST_NOTE + VOICE_LOW[v] + semitones
        pitch = np.where(pitch > VOICE_HIGH[v], pitch - 12, pitch)
        pitch = np.where(pitch < VOICE_LOW[v], pitch + 12, pitch)
        out[..., v] = np.where(note, pitch - VOICE_LOW[v] + FIRST_NOTE, column)
    return out
