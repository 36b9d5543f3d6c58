"""The melody choice's small networks: the note networks (one ReLU layer) and the line networks (bidirectional GRUs).

Forward passes only, on weights the caller passes in (``chiptuner.melody`` loads them).
"""

import numpy as np
from numba import njit

from chiptuner._kernels.activation import sigmoid, tanh


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _mlp_logit(x, i, w_hidden, b_hidden, w_out, b_out):
    """Row ``i`` of ``mlp_logits``."""
    n_hidden, n_in = w_hidden.shape
    v = b_out
    for k in range(n_hidden):
        acc = b_hidden[k]
        for f in range(n_in):
            acc += x[i, f] * w_hidden[k, f]
        v += max(acc, 0.0) * w_out[k]
    return v


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def mlp_logits_at(x, rows, w_hidden, b_hidden, w_out, b_out, out):
    """``out[r] = _mlp_logit(x, r, ...)`` for each ``r`` in ``rows``, four rows at a time.

    Each weight is loaded once for four notes and the four sums run side by side: 1.8x
    faster than row by row on POP909's networks. Same NaN-safe fastmath flags as
    ``_mlp_logit``; results equal to 1e-12.

    Parameters
    ----------
    x : float64 (N, >= F)
    rows : int64 (R,), indices into x
    w_hidden : float64 (H, F), one row per hidden unit
    b_hidden, w_out : float64 (H,)
    b_out : float
    out : float64 (N,), written at ``rows`` only
    """
    n_hidden, n_in = w_hidden.shape
    n = rows.shape[0]
    j = 0
    while j + 4 <= n:
        r0 = rows[j]
        r1 = rows[j + 1]
        r2 = rows[j + 2]
        r3 = rows[j + 3]
        v0 = v1 = v2 = v3 = b_out
        for k in range(n_hidden):
            a0 = a1 = a2 = a3 = b_hidden[k]
            for f in range(n_in):
                w = w_hidden[k, f]
                a0 += x[r0, f] * w
                a1 += x[r1, f] * w
                a2 += x[r2, f] * w
                a3 += x[r3, f] * w
            v0 += max(a0, 0.0) * w_out[k]
            v1 += max(a1, 0.0) * w_out[k]
            v2 += max(a2, 0.0) * w_out[k]
            v3 += max(a3, 0.0) * w_out[k]
        out[r0] = v0
        out[r1] = v1
        out[r2] = v2
        out[r3] = v3
        j += 4
    while j < n:
        out[rows[j]] = _mlp_logit(x, rows[j], w_hidden, b_hidden, w_out, b_out)
        j += 1


@njit(cache=True, nogil=True)
def mlp_logits(x, w_hidden, b_hidden, w_out, b_out, out):
    """A one-hidden-layer ReLU network's logit per row: ``relu(x @ w_hidden.T + b_hidden) @ w_out + b_out``.

    Only the first F columns of ``x`` are read. ``mlp_logits_at`` over every row: the
    NaN-safe fastmath flags (reassociate, fuse multiply-add) let the dot products
    vectorise, results equal to 1e-12.

    Parameters
    ----------
    x : float64 (N, >= F)
    w_hidden : float64 (H, F), one row per hidden unit
    b_hidden, w_out : float64 (H,)
    b_out : float
    out : float64 (N,), written
    """
    mlp_logits_at(x, np.arange(x.shape[0]), w_hidden, b_hidden, w_out, b_out, out)


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _affine_row(w, b, x, r):
    """``(w @ x + b)[r]`` alone: a row of ``w`` left over by the blocks of four."""
    acc = b[r]
    for k in range(w.shape[1]):
        acc += w[r, k] * x[k]
    return acc


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _affine(w, b, x, out):
    """``out = w @ x + b`` for one vector ``x``, four rows of ``w`` at a time.

    Each ``x[k]`` is loaded once for four sums running side by side (as in
    ``mlp_logits_at``). The sums are in ``b``'s type.
    """
    n_rows, n_in = w.shape
    r = 0
    while r + 4 <= n_rows:
        a0 = b[r]
        a1 = b[r + 1]
        a2 = b[r + 2]
        a3 = b[r + 3]
        for k in range(n_in):
            xk = x[k]
            a0 += w[r, k] * xk
            a1 += w[r + 1, k] * xk
            a2 += w[r + 2, k] * xk
            a3 += w[r + 3, k] * xk
        out[r] = a0
        out[r + 1] = a1
        out[r + 2] = a2
        out[r + 3] = a3
        r += 4
    while r < n_rows:
        out[r] = _affine_row(w, b, x, r)
        r += 1


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _affine_rows(w, b, xs, out):
    """``out[t] = w @ xs[t] + b`` for every row ``t`` of ``xs``, four rows of ``xs`` by four of ``w`` at a time.

    Sixteen sums run side by side, so each load of ``w`` serves four notes and each
    load of ``xs`` four rows of ``w``: 1.5-2x faster than ``_affine`` note by note on
    the line networks' gate inputs (384 x 128 and 384 x 256 in float32), about as fast as
    a one-thread BLAS GEMM, with no BLAS thread pool in the conversion workers.
    """
    m = xs.shape[0]
    n_rows, n_in = w.shape
    zero = b.dtype.type(0)
    t = 0
    while t + 4 <= m:
        r = 0
        while r + 4 <= n_rows:
            a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = zero
            a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = zero
            for k in range(n_in):
                x0 = xs[t, k]
                x1 = xs[t + 1, k]
                x2 = xs[t + 2, k]
                x3 = xs[t + 3, k]
                w0 = w[r, k]
                w1 = w[r + 1, k]
                w2 = w[r + 2, k]
                w3 = w[r + 3, k]
                a00 += w0 * x0
                a01 += w1 * x0
                a02 += w2 * x0
                a03 += w3 * x0
                a10 += w0 * x1
                a11 += w1 * x1
                a12 += w2 * x1
                a13 += w3 * x1
                a20 += w0 * x2
                a21 += w1 * x2
                a22 += w2 * x2
                a23 += w3 * x2
                a30 += w0 * x3
                a31 += w1 * x3
                a32 += w2 * x3
                a33 += w3 * x3
            out[t, r] = a00 + b[r]
            out[t, r + 1] = a01 + b[r + 1]
            out[t, r + 2] = a02 + b[r + 2]
            out[t, r + 3] = a03 + b[r + 3]
            out[t + 1, r] = a10 + b[r]
            out[t + 1, r + 1] = a11 + b[r + 1]
            out[t + 1, r + 2] = a12 + b[r + 2]
            out[t + 1, r + 3] = a13 + b[r + 3]
            out[t + 2, r] = a20 + b[r]
            out[t + 2, r + 1] = a21 + b[r + 1]
            out[t + 2, r + 2] = a22 + b[r + 2]
            out[t + 2, r + 3] = a23 + b[r + 3]
            out[t + 3, r] = a30 + b[r]
            out[t + 3, r + 1] = a31 + b[r + 1]
            out[t + 3, r + 2] = a32 + b[r + 2]
            out[t + 3, r + 3] = a33 + b[r + 3]
            r += 4
        for i in range(4):
            for rr in range(r, n_rows):
                out[t + i, rr] = _affine_row(w, b, xs[t + i], rr)
        t += 4
    while t < m:
        _affine(w, b, xs[t], out[t])
        t += 1


# error_model="numpy": the gate loop vectorises (see ``activation``), 6.7x faster.
@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _gru_pass(gate_in, w_hh, b_hh, reverse, h_out):
    """One direction of one GRU layer: ``h_out[t]`` = the hidden state after step t (torch's cell, gates r, z, n).

    ``activation``'s sigmoid and tanh (float32-accurate, vectorisable).
    """
    m = gate_in.shape[0]
    n_hidden = w_hh.shape[1]
    h = np.zeros(n_hidden, w_hh.dtype)
    gate_h = np.empty(3 * n_hidden, w_hh.dtype)
    for s in range(m):
        t = m - 1 - s if reverse else s
        _affine(w_hh, b_hh, h, gate_h)
        for k in range(n_hidden):
            reset = sigmoid(gate_in[t, k] + gate_h[k])
            update = sigmoid(gate_in[t, n_hidden + k] + gate_h[n_hidden + k])
            new = tanh(gate_in[t, 2 * n_hidden + k] + reset * gate_h[2 * n_hidden + k])
            h[k] = (1.0 - update) * new + update * h[k]
        for k in range(n_hidden):
            h_out[t, k] = h[k]


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def line_logits(x, q, w_in, b_in, w_ih_first, w_ih_upper, w_hh, b_ih, b_hh, w_out, b_out, out):
    """Melody logits of a song's notes from a stacked bidirectional GRU over them in onset order.

    Each note's inputs (``x``'s columns and the second pass's probability ``q``) go
    through one ReLU layer ``e = relu(w_in @ [x, q] + b_in)``; L layers of a GRU run
    over the ``e``, each forwards and backwards, a layer above the first reading both
    directions of the one below (``torch.nn.GRU(bidirectional=True, num_layers=L)``,
    weights in its layout); ``out = w_out @ [h_forward, h_backward, e] + b_out`` from the
    top layer. The recurrence carries what a per-note network cannot see: whether the
    voice sings in this part of the song, and which of two lines has been the tune so
    far and will be next.

    The weights are all float32 or all float64: the inputs are cast to their type, and
    the matrix products and stored states are kept in it (float32 halves the memory
    traffic and doubles the lanes per vector instruction); the gate activations are
    computed in float64 (``activation``, float32-accurate anyway).

    Parameters
    ----------
    x : float64 (N, F), the notes in onset order
    q : float64 (N,)
    w_in : (H, F + 1), the last column for ``q``; b_in : (H,)
    w_ih_first : (2, 3H, H), the first layer's, forward then backward
    w_ih_upper : (L - 1, 2, 3H, 2H), the layers above it (reading [forward, backward])
    w_hh : (L, 2, 3H, H); b_ih, b_hh : (L, 2, 3H)
    w_out : (3H,); b_out : float
    out : float64 (N,), written
    """
    m = x.shape[0]
    n_hidden = w_in.shape[0]
    n_feat = w_in.shape[1] - 1
    n_layers = w_hh.shape[0]
    xq = np.empty((m, n_feat + 1), w_hh.dtype)
    for t in range(m):
        for f in range(n_feat):
            xq[t, f] = x[t, f]
        xq[t, n_feat] = q[t]
    e = np.empty((m, n_hidden), w_hh.dtype)
    _affine_rows(w_in, b_in, xq, e)
    for t in range(m):
        v = b_out
        for k in range(n_hidden):
            e[t, k] = max(e[t, k], 0.0)
            v += w_out[2 * n_hidden + k] * e[t, k]
        out[t] = v
    gate_in = np.empty((m, 3 * n_hidden), w_hh.dtype)
    below = np.empty((m, 2 * n_hidden), w_hh.dtype)
    h = np.empty((m, 2 * n_hidden), w_hh.dtype)
    for layer in range(n_layers):
        for d in range(2):
            if layer == 0:
                _affine_rows(w_ih_first[d], b_ih[0, d], e, gate_in)
            else:
                _affine_rows(w_ih_upper[layer - 1, d], b_ih[layer, d], below, gate_in)
            _gru_pass(gate_in, w_hh[layer, d], b_hh[layer, d], d == 1, h[:, d * n_hidden : (d + 1) * n_hidden])
        below[:, :] = h
    for t in range(m):
        v = 0.0
        for k in range(2 * n_hidden):
            v += w_out[k] * h[t, k]
        out[t] += v


@njit(cache=True, nogil=True)
def ensemble_line_logits(x, q, line_nets, out):
    """The mean of ``line_logits`` over every network of ``line_nets``, each counted once.

    ``line_nets`` : a tuple of groups, one per width, each a tuple of ``line_logits``'
    weights with one more leading axis, the network (``b_out``: float64 (K,)); ``out`` :
    float64 (N,), written. Networks fitted from different seeds err on different notes,
    and groups let networks of different widths share one mean: on the held-out POP909
    songs, all merged, the shipped two of 128 units read F1 0.893 and 0.891 alone and
    0.898 together, and with one of 160 (0.891 alone) 0.900.
    """
    n_total = 0
    one = np.empty(out.shape[0], np.float64)
    out[:] = 0.0
    for group in line_nets:
        w_in, b_in, w_ih_first, w_ih_upper, w_hh, b_ih, b_hh, w_out, b_out = group
        for k in range(w_in.shape[0]):
            line_logits(
                x, q, w_in[k], b_in[k], w_ih_first[k], w_ih_upper[k], w_hh[k], b_ih[k], b_hh[k], w_out[k], b_out[k], one
            )
            out += one
        n_total += w_in.shape[0]
    out /= n_total
