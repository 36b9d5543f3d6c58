"""The GRU cells' tanh and sigmoid (rational approximations) against numpy's."""

import numpy as np

from chiptuner._kernels.activation import TANH_CLAMP, sigmoid, tanh

#: Across the float range that matters, both ends of the clamp, a subnormal and infinities.
_X = np.concatenate(
    [np.linspace(-30.0, 30.0, 20_001), [TANH_CLAMP, -TANH_CLAMP, 7.906, -7.906, 5e-324, np.inf, -np.inf]]
)


def test_tanh_is_within_3e7_everywhere():
    np.testing.assert_allclose([tanh(v) for v in _X], np.tanh(_X), rtol=0, atol=3e-7)
    assert tanh(0.0) == 0.0 and tanh(2.0) == -tanh(-2.0)  # odd, exact at 0


def test_sigmoid_is_within_1p5e7_everywhere():
    with np.errstate(over="ignore"):
        want = 1.0 / (1.0 + np.exp(-_X))
    np.testing.assert_allclose([sigmoid(v) for v in _X], want, rtol=0, atol=1.5e-7)
    assert sigmoid(0.0) == 0.5 and sigmoid(3.0) + sigmoid(-3.0) == 1.0  # symmetric about (0, 1/2)


def test_nan_stays_nan_and_float32_arguments_give_the_same_values():
    assert np.isnan(tanh(np.nan)) and np.isnan(sigmoid(np.nan))
    x32 = np.linspace(-9.0, 9.0, 101, dtype=np.float32)
    assert [tanh(v) for v in x32] == [tanh(float(v)) for v in x32]
    assert [sigmoid(v) for v in x32] == [sigmoid(float(v)) for v in x32]
