"""Thin-output convolution: values and gradients against TF's conv, the rule, the routing."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_all_close, assert_matches_conv2d_transpose, values_and_grads

from colourise_tf.layers import ConvBlock
from colourise_tf.ops import thin_conv
from colourise_tf.ops.thin_conv import thin_output_conv2d, thin_output_wanted


@pytest.mark.parametrize(
    "n, h, w, cin, cout, k, padding",
    [(2, 9, 8, 6, 1, 4, "VALID"), (1, 7, 10, 5, 3, 4, "SAME"), (2, 6, 6, 4, 2, 3, "SAME"), (1, 5, 7, 3, 1, 1, "VALID")],
)
def test_thin_output_conv_equals_conv2d_values_and_gradients(n, h, w, cin, cout, k, padding):
    rng = np.random.default_rng(h * w + k)
    x = tf.constant(rng.normal(size=(n, h, w, cin)).astype(np.float32))
    kern = tf.constant(rng.normal(size=(k, k, cin, cout)).astype(np.float32))
    ref_y = tf.nn.conv2d(x, kern, 1, padding)
    dy = tf.constant(rng.normal(size=ref_y.shape).astype(np.float32))
    ref = values_and_grads(lambda x, k: tf.nn.conv2d(x, k, 1, padding), x, kern, dy)
    got = values_and_grads(lambda x, k: thin_output_conv2d(x, k, padding), x, kern, dy)
    assert_all_close(got, ref, rtol=1e-5)


def test_thin_output_rule():
    assert thin_output_wanted([4, 4, 512, 1], (1, 1), tf.float32, training=True)  # the PatchGAN output conv
    assert thin_output_wanted([4, 4, 512, 1], (1, 1), tf.bfloat16, training=True)
    assert not thin_output_wanted([4, 4, 512, 1], (1, 1), tf.float32, training=False)
    assert not thin_output_wanted([4, 4, 512, 1], (1, 1), tf.float16, training=True)
    assert not thin_output_wanted([4, 4, 512, 1], (2, 2), tf.float32, training=True)
    assert not thin_output_wanted([4, 4, 512, 8], (1, 1), tf.float32, training=True)
    assert not thin_output_wanted([4, 4, 32, 1], (1, 1), tf.float32, training=True)


def test_patchgan_output_block_uses_thin_path_in_training_only(monkeypatch):
    monkeypatch.setattr(thin_conv, "MIN_INPUT_CHANNELS", 1)
    calls = []
    real = thin_conv.thin_output_conv2d

    def spy(x, kernel, padding="VALID"):
        calls.append(padding)
        return real(x, kernel, padding)

    monkeypatch.setattr(thin_conv, "thin_output_conv2d", spy)
    block = ConvBlock(1, 4, 1, padding=1, spectral_norm=True, use_bias=True)
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 10, 10, 8)).astype(np.float32))
    y_inf = block(x, training=False)
    assert not calls
    y_train = block(x, training=True)
    assert calls == ["VALID"] and y_train.shape == y_inf.shape == (2, 9, 9, 1)
    # Same u, v as the training call just stored: inference now uses the same W / sigma.
    np.testing.assert_allclose(block(x, training=False).numpy(), y_train.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "n, h, w, cin, cout, k, s, padding",
    [
        (2, 6, 5, 7, 2, 4, 2, "SAME"),
        (1, 5, 5, 6, 1, 4, 2, "VALID"),
        (2, 4, 6, 5, 3, 3, 1, "SAME"),
        (1, 3, 4, 4, 2, 3, 3, "VALID"),
    ],
)
def test_thin_output_transpose_equals_conv2d_transpose(n, h, w, cin, cout, k, s, padding):
    from colourise_tf.ops.thin_conv import thin_output_conv2d_transpose

    assert_matches_conv2d_transpose(thin_output_conv2d_transpose, n, h, w, cin, cout, k, s, padding, n + h + w + k + s)


def test_thin_output_transpose_rule():
    from colourise_tf.ops.thin_conv import thin_output_transpose_wanted as wanted

    assert wanted([4, 4, 2, 128], tf.bfloat16, training=True)  # the U-Net's chroma layer, [k, k, out, in]
    assert wanted([4, 4, 2, 128], tf.float32, training=True)
    assert not wanted([4, 4, 2, 128], tf.float32, training=False)
    assert not wanted([4, 4, 64, 128], tf.float32, training=True)
    assert not wanted([4, 4, 2, 16], tf.float32, training=True)


def test_unet_chroma_block_uses_thin_transpose_in_training_only(monkeypatch):
    calls = []
    real = thin_conv.thin_output_conv2d_transpose

    def spy(*args):
        calls.append(args[3])
        return real(*args)

    monkeypatch.setattr(thin_conv, "thin_output_conv2d_transpose", spy)
    block = ConvBlock(2, 4, 2, transpose=True, spectral_norm=True, use_bias=True)
    x = tf.constant(np.random.default_rng(4).normal(size=(2, 6, 6, 64)).astype(np.float32))
    y_inf = block(x, training=False)
    assert not calls
    y_train = block(x, training=True)
    assert calls == [(2, 2)] and y_train.shape == y_inf.shape == (2, 12, 12, 2)
    np.testing.assert_allclose(block(x, training=False).numpy(), y_train.numpy(), rtol=1e-4, atol=1e-5)
