"""Colour conversions against scikit-image (an independent implementation)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from skimage import color as skcolor

from colourise_tf import colour

RNG = np.random.default_rng(1234)


def _random_rgb(shape=(4, 17, 23, 3)):
    return RNG.random(shape).astype(np.float32)


def test_rgb_to_lab_matches_skimage():
    rgb = _random_rgb()
    ours = colour.rgb_to_lab(rgb).numpy()
    ref = skcolor.rgb2lab(rgb.astype(np.float64))
    np.testing.assert_allclose(ours, ref, atol=0.01)


def test_lab_to_rgb_matches_skimage():
    rgb = _random_rgb()
    lab = skcolor.rgb2lab(rgb.astype(np.float64))
    ours = colour.lab_to_rgb(lab.astype(np.float32)).numpy()
    ref = skcolor.lab2rgb(lab)
    np.testing.assert_allclose(ours, ref, atol=0.01)
    # Arbitrary (partly out-of-gamut) Lab values: both clip to [0, 1] the same way.
    lab_any = np.stack([RNG.uniform(0, 100, 500), RNG.uniform(-110, 110, 500), RNG.uniform(-110, 110, 500)], -1)
    ours = colour.lab_to_rgb(lab_any.astype(np.float32)).numpy()
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = skcolor.lab2rgb(lab_any)
    np.testing.assert_allclose(ours, ref, atol=0.01)


def test_uint8_input_equals_float_input():
    rgb8 = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    a = colour.rgb_to_lab(rgb8).numpy()
    b = colour.rgb_to_lab(rgb8.astype(np.float32) / 255.0).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a.dtype == np.float32


def test_white_black_and_primaries_have_known_lab():
    # Reference values of CIE Lab for sRGB under D65 (as in every colour-science table).
    rgb = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    lab = colour.rgb_to_lab(rgb).numpy()
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.02)
    np.testing.assert_allclose(lab[1], [0, 0, 0], atol=1e-4)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.05)
    np.testing.assert_allclose(lab[3], [87.73, -86.18, 83.18], atol=0.05)
    np.testing.assert_allclose(lab[4], [32.30, 79.19, -107.86], atol=0.05)


def test_every_8bit_colour_round_trips_exactly():
    """All 16,777,216 sRGB colours survive RGB -> Lab -> RGB to the same uint8 value."""
    convert = tf.function(lambda x: colour.lab_to_rgb(colour.rgb_to_lab(x)))
    codes = np.arange(2**24, dtype=np.uint32)
    worst = 0
    for chunk in np.array_split(codes, 16):
        rgb8 = np.stack([(chunk >> 16) & 255, (chunk >> 8) & 255, chunk & 255], -1).astype(np.uint8)
        back = convert(tf.constant(rgb8)).numpy()
        back8 = np.round(back * 255.0).astype(np.int32)
        diff = np.abs(back8 - rgb8.astype(np.int32))
        worst = max(worst, int(diff.max()))
        if worst:
            bad = rgb8[np.any(diff > 0, axis=-1)][:5]
            pytest.fail(f"round trip changed colours, e.g. {bad.tolist()}")
    assert worst == 0


@pytest.mark.parametrize(
    "rgb",
    [
        [0, 0, 0],
        [1, 1, 1],
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
        [0, 1, 1],
        [1, 0, 1],
        [1, 1, 0],
    ],
)
def test_gradients_are_finite_at_extremes(rgb):
    x = tf.constant([rgb], tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        lab = colour.rgb_to_lab(x)
        back = colour.lab_to_rgb(lab)
        loss_lab = tf.reduce_sum(lab * tf.constant([1.0, 0.5, -0.25]))
        loss_rgb = tf.reduce_sum(back)
    for loss in (loss_lab, loss_rgb):
        g = tape.gradient(loss, x).numpy()
        assert np.all(np.isfinite(g)), g
    # Lab -> RGB gradient w.r.t. the Lab input as well (the generator's path).
    lab_in = tf.constant(colour.rgb_to_lab(x).numpy())
    with tf.GradientTape() as tape:
        tape.watch(lab_in)
        out = tf.reduce_sum(colour.lab_to_rgb(lab_in))
    assert np.all(np.isfinite(tape.gradient(out, lab_in).numpy()))


def test_gradient_matches_finite_difference():
    x = tf.constant([[0.3, 0.6, 0.2]], tf.float64)
    x32 = tf.cast(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x32)
        y = colour.rgb_to_lab(x32)[0, 1]
    g = tape.gradient(y, x32).numpy()[0]
    eps = 1e-3
    num = []
    for i in range(3):
        d = np.zeros(3)
        d[i] = eps
        hi = skcolor.rgb2lab((x.numpy()[0] + d)[None])[0, 1]
        lo = skcolor.rgb2lab((x.numpy()[0] - d)[None])[0, 1]
        num.append((hi - lo) / (2 * eps))
    np.testing.assert_allclose(g, num, rtol=2e-2, atol=1e-2)


def test_same_result_eager_tf_function_and_tf_data():
    rgb8 = RNG.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    eager = colour.rgb_to_lab(rgb8).numpy()
    graph = tf.function(colour.rgb_to_lab)(tf.constant(rgb8)).numpy()
    ds = tf.data.Dataset.from_tensor_slices(rgb8).map(colour.rgb_to_lab).batch(3)
    data = next(iter(ds)).numpy()
    # Graph-mode op fusion reorders float32 arithmetic: equal to ~1e-6 relative.
    np.testing.assert_allclose(eager, graph, atol=1e-4)
    np.testing.assert_allclose(eager, data, atol=1e-4)


def test_float32_under_mixed_precision_policy():
    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        rgb = _random_rgb((2, 3, 3))
        lab = colour.rgb_to_lab(rgb)
        assert lab.dtype == tf.float32
        np.testing.assert_allclose(lab.numpy(), skcolor.rgb2lab(rgb.astype(np.float64)), atol=0.01)
        # bfloat16 input is promoted, not kept.
        assert colour.lab_to_rgb(tf.cast(lab, tf.bfloat16)).dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy(old)


def test_yuv_matches_dcgan_report_formulas():
    rgb8 = RNG.integers(0, 256, (50, 3)).astype(np.float64)
    r, g, b = rgb8.T
    # The DCGAN report, section VI-A, uint8 form with +128 offsets.
    y = r * 0.299 + g * 0.587 + b * 0.114
    u = r * -0.168736 + g * -0.331264 + b * 0.5 + 128
    v = r * 0.5 + g * -0.418688 + b * -0.081312 + 128
    ours = colour.rgb_to_yuv(rgb8.astype(np.uint8)).numpy() * 255.0
    np.testing.assert_allclose(ours[:, 0], y, atol=1e-3)
    np.testing.assert_allclose(ours[:, 1] + 128, u, atol=1e-3)
    np.testing.assert_allclose(ours[:, 2] + 128, v, atol=1e-3)
    # Inverse, seed formulas: R = Y + 1.4075 (V-128), ...
    rr = y + 1.4075 * (v - 128)
    gg = y - 0.3455 * (u - 128) - 0.7169 * (v - 128)
    bb = y + 1.7790 * (u - 128)
    ref = np.clip(np.stack([rr, gg, bb], -1) / 255.0, 0, 1)
    back = colour.yuv_to_rgb(colour.rgb_to_yuv(rgb8 / 255.0)).numpy()
    np.testing.assert_allclose(back, ref, atol=1e-4)
    # The paper's rounded coefficients still round-trip to within one 8-bit level.
    assert np.max(np.abs(back * 255.0 - rgb8)) < 1.0


@pytest.mark.parametrize("space", ["lab", "yuv"])
def test_model_range_round_trip(space):
    rgb = _random_rgb((2, 5, 5, 3))
    grey, chroma = colour.rgb_to_model(rgb, space)
    assert grey.shape[-1] == 1 and chroma.shape[-1] == 2
    assert float(tf.reduce_min(grey)) >= -1.0 and float(tf.reduce_max(grey)) <= 1.0
    assert float(tf.reduce_max(tf.abs(chroma))) <= 1.0
    back = colour.model_to_rgb(grey, chroma, space).numpy()
    np.testing.assert_allclose(back, rgb, atol=4e-3)


def test_scaling_helpers_are_inverse_and_documented_convention():
    lab = tf.constant([[0.0, -110.0, 110.0], [100.0, 55.0, -22.0]])
    l_norm, ab_norm = colour.lab_to_model(lab)
    np.testing.assert_allclose(l_norm.numpy()[:, 0], [-1.0, 1.0])
    np.testing.assert_allclose(ab_norm.numpy()[0], [-1.0, 1.0])
    np.testing.assert_allclose(colour.model_to_lab(l_norm, ab_norm).numpy(), lab.numpy(), atol=1e-5)


def test_saturation_gain_scales_chroma_and_zero_gives_grey():
    rgb = _random_rgb((1, 4, 4, 3))
    grey, ab = colour.rgb_to_model(rgb)
    out = colour.model_to_rgb(grey, colour.apply_saturation(ab, 0.0)).numpy()
    # Zero chroma -> neutral grey: R = G = B.
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=2e-3)
    np.testing.assert_allclose(out[..., 1], out[..., 2], atol=2e-3)
    np.testing.assert_allclose(colour.apply_saturation(ab, 2.0).numpy(), 2 * ab.numpy(), rtol=1e-6)


def test_bad_dtype_and_space_raise_clear_errors():
    with pytest.raises(TypeError, match="uint8"):
        colour.to_float_rgb(np.zeros((1, 3), np.int64))
    with pytest.raises(ValueError, match="colour space"):
        colour.rgb_to_model(np.zeros((1, 3), np.float32), "hsv")
