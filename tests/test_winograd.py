"""Winograd convolution: the transforms, values and gradients against TF's conv, the rule."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_all_close, values_and_grads

from colourise_tf.layers import ConvBlock, SpectralNorm, conv_forward
from colourise_tf.ops import winograd
from colourise_tf.ops.winograd import TILE, toom_cook, winograd_conv2d, winograd_wanted


@pytest.mark.parametrize("m, r", [(4, 3), (3, 4), (2, 5), (2, 3), (2, 4)])
def test_toom_cook_1d_is_correlation(m, r):
    """y = AT[(G g) * (BT d)] equals numpy's correlation of d with g."""
    at, g, bt = toom_cook(m, r)
    n = m + r - 1
    assert at.shape == (m, n) and g.shape == (n, r) and bt.shape == (n, n)
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(5):
        d, f = rng.normal(size=n), rng.normal(size=r)
        np.testing.assert_allclose(at @ ((g @ f) * (bt @ d)), np.correlate(d, f, mode="valid"), atol=1e-12)


def test_toom_cook_needs_enough_points():
    with pytest.raises(ValueError, match="points"):
        toom_cook(4, 4, (0.0, 1.0))


@pytest.mark.parametrize(
    "n, h, w, cin, cout, r, pads",
    [
        (2, 9, 9, 5, 6, 4, ((1, 1), (1, 1))),  # the PatchGAN's stride-1 layer: pad 1, 4x4
        (1, 13, 10, 3, 4, 4, ((0, 0), (0, 0))),  # outputs not a multiple of the tile
        (2, 8, 11, 4, 3, 3, ((1, 1), (1, 1))),  # 3x3 "same"
        (1, 7, 6, 2, 5, 3, ((2, 0), (0, 3))),  # asymmetric pads
        (2, 10, 9, 3, 2, 5, ((2, 2), (2, 2))),
        (1, 4, 4, 3, 2, 4, ((0, 0), (0, 0))),  # a single output pixel
    ],
)
def test_winograd_equals_conv2d_values_and_gradients(n, h, w, cin, cout, r, pads):
    rng = np.random.default_rng(h * w + r)
    x = tf.constant(rng.normal(size=(n, h, w, cin)).astype(np.float32))
    k = tf.constant(rng.normal(size=(r, r, cin, cout)).astype(np.float32))
    ho, wo = h + sum(pads[0]) - r + 1, w + sum(pads[1]) - r + 1
    dy = tf.constant(rng.normal(size=(n, ho, wo, cout)).astype(np.float32))

    def reference(x, k):
        return tf.nn.conv2d(tf.pad(x, [[0, 0], list(pads[0]), list(pads[1]), [0, 0]]), k, 1, "VALID")

    ref = values_and_grads(reference, x, k, dy)
    got = values_and_grads(lambda x, k: winograd_conv2d(x, k, pads), x, k, dy)
    assert got[0].shape == (n, ho, wo, cout)  # the shape formula of a VALID conv of the padded input
    assert_all_close(got, ref, rtol=1e-4)


def test_winograd_dynamic_batch_in_tf_function():
    f = tf.function(
        lambda x, k: winograd_conv2d(x, k, ((1, 1), (1, 1))),
        input_signature=[tf.TensorSpec([None, 8, 8, 3]), tf.TensorSpec([4, 4, 3, 2])],
    )
    rng = np.random.default_rng(0)
    k = tf.constant(rng.normal(size=(4, 4, 3, 2)).astype(np.float32))
    for n in (1, 3):
        x = tf.constant(rng.normal(size=(n, 8, 8, 3)).astype(np.float32))
        ref = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), k, 1, "VALID")
        np.testing.assert_allclose(f(x, k).numpy(), ref.numpy(), rtol=1e-4, atol=1e-4)


def test_winograd_rejects_inputs_smaller_than_the_kernel():
    with pytest.raises(ValueError, match="smaller than the 4x4 kernel"):
        winograd_conv2d(tf.zeros([1, 2, 2, 1]), tf.zeros([4, 4, 1, 1]))


def test_winograd_rule():
    # The PatchGAN's stride-1 256->512 layer at all three scales (31, 15, 7 outputs) in float32 training.
    for size in (31, 15, 7):
        assert winograd_wanted([4, 4, 256, 512], (1, 1), (size, size), tf.float32, training=True)
    assert winograd_wanted([3, 3, 256, 256], (1, 1), (64, 64), "float32", training=True)  # ResNet blocks
    # Not: inference, bfloat16/float16, strided, one output channel, thin layers, one tile per side.
    assert not winograd_wanted([4, 4, 256, 512], (1, 1), (31, 31), tf.float32, training=False)
    assert not winograd_wanted([4, 4, 256, 512], (1, 1), (31, 31), tf.bfloat16, training=True)
    assert not winograd_wanted([4, 4, 256, 512], (1, 1), (31, 31), tf.float16, training=True)
    assert not winograd_wanted([4, 4, 256, 512], (2, 2), (31, 31), tf.float32, training=True)
    assert not winograd_wanted([4, 4, 512, 1], (1, 1), (31, 31), tf.float32, training=True)
    assert not winograd_wanted([3, 3, 64, 64], (1, 1), (64, 64), tf.float32, training=True)
    assert not winograd_wanted([4, 4, 256, 512], (1, 1), (5, 5), tf.float32, training=True)
    assert not winograd_wanted([7, 7, 256, 256], (1, 1), (64, 64), tf.float32, training=True)
    assert not winograd_wanted([4, 4, 256, 512], (1, 1), (None, 31), tf.float32, training=True)
    assert set(TILE) == {3, 4, 5}


@pytest.fixture
def winograd_calls(monkeypatch):
    """Every layer may take the path (no channel minimum); records each call's pads."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    calls = []
    real = winograd.winograd_conv2d

    def spy(x, kernel, pads=((0, 0), (0, 0))):
        calls.append(pads)
        return real(x, kernel, pads)

    monkeypatch.setattr(winograd, "winograd_conv2d", spy)
    return calls


@pytest.mark.parametrize("padding", [1, "same", "valid"])
def test_conv_block_training_uses_winograd_with_the_same_values_and_gradients(winograd_calls, padding):
    """A stride-1 ConvBlock in training: the Winograd path equals the plain conv."""
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(2, 9, 10, 5)).astype(np.float32))
    block = ConvBlock(6, 4, 1, padding=padding, use_bias=True)
    block.build(x.shape)

    def run(training):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = block(x, training=training)
            loss = tf.reduce_sum(tf.sin(y) + y * y)
        gx, gk = tape.gradient(loss, [x, block.conv_layer.kernel])
        return y.numpy(), gx.numpy(), gk.numpy()

    plain = run(False)
    assert not winograd_calls  # inference keeps the conv op
    fast = run(True)
    assert winograd_calls  # training took the Winograd path
    assert_all_close(fast, plain, rtol=1e-4)


def test_spectral_norm_conv_training_routes_through_winograd(winograd_calls):
    """The SN-wrapped PatchGAN layer (pad 1, 4x4, stride 1) uses the path in training only."""
    block = ConvBlock(8, 4, 1, padding=1, spectral_norm=True)
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 12, 12, 4)).astype(np.float32))
    block(x, training=False)
    assert not winograd_calls
    y = block(x, training=True)
    assert winograd_calls == [((1, 1), (1, 1))]
    assert isinstance(block.conv, SpectralNorm)
    # The same call on the plain conv op: W / sigma with the u, v this training call used.
    w = block.conv.normalized_kernel()
    ref = conv_forward(block.conv.layer, x, w, explicit_padding=1)
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-4, atol=1e-4 * np.abs(ref.numpy()).max())


def test_winograd_rule_is_off_when_a_gpu_or_tpu_is_visible(monkeypatch):
    from colourise_tf.ops import gate as cpu

    assert cpu.cpu_only()  # this test machine has neither
    monkeypatch.setattr(cpu, "cpu_only", lambda: False)
    assert not winograd_wanted([4, 4, 256, 512], (1, 1), (31, 31), tf.float32, training=True)
    with cpu.cpu_kernels("on"):  # forced on: whatever the devices
        assert winograd_wanted([4, 4, 256, 512], (1, 1), (31, 31), tf.float32, training=True)
    monkeypatch.setattr(cpu, "cpu_only", lambda: True)
    with cpu.cpu_kernels("off"):
        assert not winograd_wanted([4, 4, 256, 512], (1, 1), (31, 31), tf.float32, training=True)
