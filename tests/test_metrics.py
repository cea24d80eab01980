"""Tests for colourise_tf.metrics against scikit-image and hand-computed values."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from colourise_tf import losses, metrics


def _smooth_images(seed: int, shape=(2, 40, 40, 3)) -> np.ndarray:
    """Random-ish but smooth images: bilinear upsampling of a coarse random grid."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((shape[0], 6, 6, shape[3])).astype(np.float32)
    up = tf.image.resize(coarse, shape[1:3], method="bilinear").numpy()
    return np.clip(up, 0.0, 1.0)


@pytest.fixture(scope="module")
def image_pair():
    a = _smooth_images(0)
    noise = np.random.default_rng(1).normal(0.0, 0.03, a.shape).astype(np.float32)
    b = np.clip(0.9 * a + 0.05 + 0.1 * _smooth_images(2) + noise, 0.0, 1.0)
    return a, b


def test_psnr_matches_skimage(image_pair):
    a, b = image_pair
    got = metrics.psnr(a, b).numpy()
    assert got.shape == (2,)
    expected = [peak_signal_noise_ratio(a[i], b[i], data_range=1.0) for i in range(2)]
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_ssim_matches_skimage_gaussian_variant(image_pair):
    a, b = image_pair
    got = metrics.ssim(a, b).numpy()
    assert got.shape == (2,)
    expected = [
        structural_similarity(
            a[i],
            b[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
        for i in range(2)
    ]
    np.testing.assert_allclose(got, expected, atol=1e-3)
    np.testing.assert_allclose(metrics.ssim(a, a).numpy(), [1.0, 1.0], atol=1e-6)


def test_ab_l1_l2_hand_computed():
    # two pixels; L is ignored. ab true (0, 0), (10, -5); pred (3, 4), (10, 5)
    lab_true = tf.constant([[[[50.0, 0.0, 0.0], [50.0, 10.0, -5.0]]]])
    lab_pred = tf.constant([[[[20.0, 3.0, 4.0], [90.0, 10.0, 5.0]]]])
    # differences (-3, -4), (0, -10)
    # L1 = (3 + 4 + 0 + 10) / 4 = 4.25 ; L2 = (sqrt(9 + 16) + sqrt(0 + 100)) / 2 = 7.5
    np.testing.assert_allclose(metrics.ab_l1(lab_true, lab_pred).numpy(), [4.25])
    np.testing.assert_allclose(metrics.ab_l2(lab_true, lab_pred).numpy(), [7.5])
    # ab-only inputs give the same
    np.testing.assert_allclose(metrics.ab_l2(lab_true[..., 1:], lab_pred[..., 1:]).numpy(), [7.5])


# ------------------------------------------------------------------ divergences


def test_js_identical_disjoint_symmetric():
    p = tf.constant([[0.2, 0.3, 0.5, 0.0], [0.0, 0.0, 0.5, 0.5]], tf.float64)
    q = tf.constant([[0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]], tf.float64)
    np.testing.assert_allclose(metrics.js_divergence(p, p).numpy(), [0.0, 0.0], atol=1e-12)
    # row 1: disjoint supports -> ln 2
    np.testing.assert_allclose(metrics.js_divergence(p, q).numpy()[1], math.log(2), atol=1e-6)
    np.testing.assert_allclose(metrics.js_divergence(p, q).numpy(), metrics.js_divergence(q, p).numpy(), atol=1e-12)
    # counts are normalised: JS of counts == JS of probabilities
    np.testing.assert_allclose(metrics.js_divergence(p * 1000, q * 7).numpy(), metrics.js_divergence(p, q).numpy())


def test_kl_hand_computed():
    p = tf.constant([0.5, 0.5], tf.float64)
    q = tf.constant([0.25, 0.75], tf.float64)
    # KL(p||q) = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln 2 + 0.5 ln(2/3)
    expected = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    np.testing.assert_allclose(float(metrics.kl_divergence(p, q, eps=0.0)), expected, rtol=1e-12)
    np.testing.assert_allclose(float(metrics.kl_divergence(p, q)), expected, rtol=1e-8)
    assert float(metrics.kl_divergence(p, p)) == pytest.approx(0.0, abs=1e-12)
    # an empty bin in q stays finite thanks to eps
    assert np.isfinite(float(metrics.kl_divergence(p, tf.constant([1.0, 0.0], tf.float64))))


def test_ab_histogram_bins_and_streaming():
    hist = metrics.AbHistogram()
    assert hist.bins == 220 and hist.bin_edges[0] == -110 and hist.bin_edges[-1] == 110
    a = tf.constant([-110.0, -109.5, 0.0, 0.5, 109.99, 110.0, 500.0, -500.0])
    b = tf.zeros_like(a)
    ab = tf.stack([a, b], axis=-1)[tf.newaxis, tf.newaxis]  # [1, 1, 8, 2]
    hist.update(ab)
    counts = hist.result(normalize=False).numpy()
    # bin i covers [-110 + i, -109 + i); 110 and out-of-range values go to the end bins
    assert counts[0, 0] == 3  # -110, -109.5, -500
    assert counts[0, 110] == 2  # 0, 0.5
    assert counts[0, 219] == 3  # 109.99, 110, 500
    assert counts[1, 110] == 8 and counts.sum() == 16
    # streaming over two Lab batches == one pass over both
    lab1 = tf.random.stateless_uniform([2, 4, 4, 3], seed=[1, 2], minval=-60, maxval=60)
    lab2 = tf.random.stateless_uniform([3, 4, 4, 3], seed=[3, 4], minval=-60, maxval=60)
    stream = metrics.AbHistogram()
    stream.update(lab1)
    stream.update(lab2)
    pixels = tf.concat([tf.reshape(lab1, [-1, 3]), tf.reshape(lab2, [-1, 3])], axis=0)
    whole = metrics.ab_histograms(pixels)
    np.testing.assert_allclose(stream.result().numpy(), whole.numpy())
    np.testing.assert_allclose(whole.numpy().sum(axis=-1), [1.0, 1.0])
    np.testing.assert_allclose(metrics.ab_histograms([lab1, lab2]).numpy(), whole.numpy())
    stream.reset_state()
    assert stream.result(normalize=False).numpy().sum() == 0
    divs = metrics.histogram_divergences(whole, whole)
    assert set(divs) == {"js_a", "js_b", "kl_a", "kl_b"} and max(divs.values()) < 1e-12


# ---------------------------------------------------------------- colourfulness


def test_colourfulness_hand_computed():
    # two pixels (0-255): red (255, 0, 0) and black (0, 0, 0)
    # rg = R - G = [255, 0] -> mu 127.5, sigma 127.5
    # yb = (R + G)/2 - B = [127.5, 0] -> mu 63.75, sigma 63.75
    # M = sqrt(127.5^2 + 63.75^2) + 0.3 sqrt(127.5^2 + 63.75^2) = 1.3 * 63.75 * sqrt(5)
    expected = 1.3 * 63.75 * math.sqrt(5)
    img = np.array([[[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]], np.float32)
    np.testing.assert_allclose(metrics.colourfulness(img).numpy(), [expected], rtol=1e-6)
    np.testing.assert_allclose(metrics.colourfulness((img * 255).astype(np.uint8)).numpy(), [expected], rtol=1e-6)


def test_colourfulness_grey_is_zero():
    grey = tf.tile(tf.random.stateless_uniform([2, 8, 8, 1], seed=[1, 1]), [1, 1, 1, 3])
    np.testing.assert_allclose(metrics.colourfulness(grey).numpy(), [0.0, 0.0], atol=1e-3)


# --------------------------------------------------------------------- perceptual


@pytest.fixture(scope="module")
def lperc():
    keras.utils.set_random_seed(0)
    return metrics.PerceptualDistance(weights=None)


def test_perceptual_distance_layers_and_frozen(lperc):
    names = [t.name for t in lperc.feature_extractor.outputs]
    assert len(names) == 5
    assert lperc.layers == tuple(f"block{i}_conv1" for i in range(1, 6))
    assert lperc.feature_extractor.trainable_weights == []


def test_perceptual_distance_zero_and_monotonic(lperc):
    x = tf.constant(0.25 + 0.5 * _smooth_images(3, (2, 32, 32, 3)))
    noise = tf.random.stateless_normal(x.shape, seed=[9, 9])
    assert np.all(lperc(x, x).numpy() == 0.0)
    values = [lperc(x, x + s * noise).numpy() for s in (0.01, 0.03, 0.1, 0.2)]
    assert values[0].shape == (2,)
    for lo, hi in zip(values, values[1:]):
        assert np.all(hi > lo)


def test_perceptual_distance_manual(lperc):
    x = tf.random.stateless_uniform([1, 32, 32, 3], seed=[1, 3])
    y = tf.random.stateless_uniform([1, 32, 32, 3], seed=[2, 3])
    fx, fy = lperc.features(x), lperc.features(y)
    expected = np.mean([np.mean(np.abs(a.numpy() - b.numpy())) for a, b in zip(fx, fy)])
    np.testing.assert_allclose(lperc(x, y).numpy(), [expected], rtol=1e-5)


def test_discriminator_accuracy_reexported():
    assert metrics.discriminator_accuracy is losses.discriminator_accuracy
