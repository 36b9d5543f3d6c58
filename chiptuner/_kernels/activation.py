"""tanh and sigmoid for the GRU cells (melody line networks, arranger step), inlined so loops over units vectorise.

``np.tanh``, ``np.exp`` and ``math.exp`` are scalar libm calls under numba (no SVML): a GRU
cell's three per unit cost more than the matrix products around them. These are one
rational function each, with no call and no branch, so a loop over the units runs in
vector lanes, on one condition: the caller is compiled with ``error_model="numpy"``.
Numba's default error model puts a zero check on every float division, and that branch
stops the loop vectorising (the melody GRU's gate loop: 6.7x slower). The denominator
here is at least its constant term, 4.89e-3, so there is nothing to check. The float64
constants make the arithmetic float64 whatever the argument's type.

Both are inlined into cached kernels of other modules, and numba's cache checks only the
caller's file: after editing this one in a checkout, clear ``chiptuner/_kernels/__pycache__``.
"""

from numba import njit

#: ``tanh`` clamps its argument here: beyond it tanh rounds to +-1 in float32.
TANH_CLAMP = 7.90531110763549805


@njit(cache=True, nogil=True, inline="always")
def tanh(x):
    """The hyperbolic tangent to float32 accuracy (absolute error under 3e-7).

    The rational approximation of Eigen's ``ptanh_float``, odd numerator of degree 13 over
    even denominator of degree 6, on x clamped to +-7.905.
    """
    x = min(max(x, -TANH_CLAMP), TANH_CLAMP)
    x2 = x * x
    p = -2.76076847742355e-16
    p = p * x2 + 2.00018790482477e-13
    p = p * x2 - 8.60467152213735e-11
    p = p * x2 + 5.12229709037114e-08
    p = p * x2 + 1.48572235717979e-05
    p = p * x2 + 6.37261928875436e-04
    p = p * x2 + 4.89352455891786e-03
    d = 1.19825839466702e-06
    d = d * x2 + 1.18534705686654e-04
    d = d * x2 + 2.26843463243900e-03
    d = d * x2 + 4.89352518554385e-03
    return x * p / d


@njit(cache=True, nogil=True, inline="always")
def sigmoid(x):
    """The logistic function 1 / (1 + exp(-x)) as (1 + tanh(x / 2)) / 2: absolute error under 1.5e-7."""
    return 0.5 + 0.5 * tanh(0.5 * x)
