"""Few-position convolutions as GEMMs: values and gradients against TF's convs, the
col2im adjoint identity, the rule, and the routing through ConvBlock."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_all_close, assert_matches_conv2d_transpose, values_and_grads

from colourise_tf.layers import ConvBlock
from colourise_tf.ops import gate as cpu
from colourise_tf.ops import gemm_conv
from colourise_tf.ops.gemm_conv import col2im, conv_pads, gemm_conv2d, gemm_conv2d_transpose, gemm_conv_wanted, im2col


@pytest.mark.parametrize(
    "n, h, w, cin, cout, k, s, padding",
    [
        (2, 8, 8, 6, 5, 4, 2, "SAME"),  # the U-Net / PatchGAN stride-2 layers
        (1, 7, 9, 3, 4, 4, 2, "SAME"),  # odd sizes: asymmetric SAME pads
        (2, 2, 2, 5, 3, 4, 2, "SAME"),  # one output pixel, kernel mostly on padding
        (1, 9, 7, 4, 2, 4, 2, "VALID"),  # windows that do not reach the last row/column
        (2, 6, 5, 3, 3, 3, 1, "SAME"),
        (1, 6, 6, 2, 3, 4, 1, "VALID"),
        (1, 5, 5, 2, 2, 1, 1, "VALID"),
    ],
)
def test_gemm_conv2d_equals_conv2d(n, h, w, cin, cout, k, s, padding):
    rng = np.random.default_rng(n * 100 + h * 10 + w + k + s)
    x = tf.constant(rng.normal(size=(n, h, w, cin)).astype(np.float32))
    kern = tf.constant(rng.normal(size=(k, k, cin, cout)).astype(np.float32))
    ref_y = tf.nn.conv2d(x, kern, s, padding)
    dy = tf.constant(rng.normal(size=ref_y.shape).astype(np.float32))
    pads = (conv_pads(h, k, s, padding), conv_pads(w, k, s, padding))
    ref = values_and_grads(lambda x, kk: tf.nn.conv2d(x, kk, s, padding), x, kern, dy)
    got = values_and_grads(lambda x, kk: gemm_conv2d(x, kk, (s, s), pads), x, kern, dy)
    assert_all_close(got, ref, rtol=1e-5)


def test_gemm_conv2d_explicit_asymmetric_pads_equal_pad_then_conv():
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(2, 6, 7, 3)).astype(np.float32))
    kern = tf.constant(rng.normal(size=(4, 4, 3, 4)).astype(np.float32))
    pads = ((1, 2), (2, 0))

    def ref_fn(x, kk):
        return tf.nn.conv2d(tf.pad(x, [[0, 0], list(pads[0]), list(pads[1]), [0, 0]]), kk, 1, "VALID")

    dy = tf.constant(rng.normal(size=ref_fn(x, kern).shape).astype(np.float32))
    got = values_and_grads(lambda x, kk: gemm_conv2d(x, kk, (1, 1), pads), x, kern, dy)
    assert_all_close(got, values_and_grads(ref_fn, x, kern, dy), rtol=1e-5)


@pytest.mark.parametrize(
    "n, h, w, cin, cout, k, s, padding",
    [
        (2, 4, 4, 6, 5, 4, 2, "SAME"),  # the U-Net decoder layers
        (1, 1, 1, 4, 3, 4, 2, "SAME"),  # 1x1 -> 2x2, as dec1 at 256x256
        (1, 3, 5, 3, 2, 4, 2, "SAME"),
        (2, 3, 4, 3, 2, 4, 2, "VALID"),
        (1, 5, 4, 2, 3, 3, 1, "SAME"),
    ],
)
def test_gemm_conv2d_transpose_equals_conv2d_transpose(n, h, w, cin, cout, k, s, padding):
    assert_matches_conv2d_transpose(gemm_conv2d_transpose, n, h, w, cin, cout, k, s, padding, n * 100 + h * 10 + w + k)


@pytest.mark.parametrize("k, s, h, pads", [(4, 2, 8, (1, 1)), (4, 2, 7, (1, 2)), (3, 1, 5, (1, 1)), (4, 2, 9, (0, 0))])
def test_col2im_is_the_adjoint_of_im2col(k, s, h, pads):
    """<im2col(x), z> == <x, col2im(z)> for random x, z: col2im is im2col's transpose."""
    rng = np.random.default_rng(k + s + h)
    x = rng.normal(size=(2, h, h, 3))
    cols = im2col(tf.constant(x), k, s, pads, pads).numpy()
    oh = cols.shape[1]
    z = rng.normal(size=cols.shape)
    back = col2im(tf.constant(z.reshape(2, oh, oh, k, k, 3)), k, s, h, h, pads[0], pads[0]).numpy()
    assert back.shape == x.shape
    np.testing.assert_allclose(np.sum(cols * z), np.sum(x * back), rtol=1e-10)


def test_gemm_conv2d_rejects_input_smaller_than_kernel():
    with pytest.raises(ValueError, match="smaller than the 4x4 kernel"):
        gemm_conv2d(tf.zeros([1, 2, 2, 1]), tf.zeros([4, 4, 1, 1]), (1, 1), ((0, 0), (0, 0)))


def test_gemm_conv_rule(monkeypatch):
    monkeypatch.setattr(gemm_conv, "_avx512", lambda: False)
    k = [4, 4, 512, 512]
    assert gemm_conv_wanted(16, k, (2, 2), tf.float32, training=True)
    assert gemm_conv_wanted(gemm_conv.MAX_ROWS, k, (2, 2), tf.float32, training=True)
    assert not gemm_conv_wanted(gemm_conv.MAX_ROWS + 1, k, (2, 2), tf.float32, training=True)
    assert not gemm_conv_wanted(16, k, (2, 2), tf.float32, training=False)
    assert not gemm_conv_wanted(16, k, (2, 2), tf.bfloat16, training=True)
    assert not gemm_conv_wanted(16, [4, 4, 64, 128], (2, 2), tf.float32, training=True)  # few channels
    assert not gemm_conv_wanted(16, [3, 3, 512, 512], (2, 2), tf.float32, training=True)  # k % s != 0
    assert gemm_conv_wanted(16, [3, 3, 512, 512], (1, 1), tf.float32, training=True)
    monkeypatch.setattr(gemm_conv, "_avx512", lambda: True)  # AVX-512: oneDNN wins from fewer rows on
    assert gemm_conv.MAX_ROWS_AVX512 < gemm_conv.MAX_ROWS
    assert gemm_conv_wanted(gemm_conv.MAX_ROWS_AVX512, k, (2, 2), tf.float32, training=True)
    assert not gemm_conv_wanted(gemm_conv.MAX_ROWS_AVX512 + 1, k, (2, 2), tf.float32, training=True)
    assert not gemm_conv_wanted(16, k, (2, 2), tf.bfloat16, training=True)
    monkeypatch.setattr(gemm_conv, "_avx512", lambda: False)
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: ["dev"] if kind == "GPU" else [])
    cpu.cpu_only.cache_clear()
    try:
        assert not gemm_conv_wanted(16, k, (2, 2), tf.float32, training=True)
    finally:
        monkeypatch.undo()
        cpu.cpu_only.cache_clear()


@pytest.mark.parametrize("transpose", [False, True])
def test_conv_block_takes_gemm_path_in_training_only(monkeypatch, transpose):
    monkeypatch.setattr(gemm_conv, "MIN_CHANNEL_PRODUCT", 1)
    monkeypatch.setattr(gemm_conv, "_avx512", lambda: False)
    name = "gemm_conv2d_transpose" if transpose else "gemm_conv2d"
    calls = []
    real = getattr(gemm_conv, name)

    def spy(*args):
        calls.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(gemm_conv, name, spy)
    block = ConvBlock(
        6, 4, 2, transpose=transpose, spectral_norm=True, use_bias=True, padding="same" if transpose else 1
    )
    x = tf.constant(np.random.default_rng(5).normal(size=(2, 4, 4, 5)).astype(np.float32))
    y_inf = block(x, training=False)
    assert not calls
    y_train = block(x, training=True)
    assert len(calls) == 1 and y_train.shape == y_inf.shape
    np.testing.assert_allclose(block(x, training=False).numpy(), y_train.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size, path", [(8, "gemm"), (16, "winograd")])
def test_stride1_conv_goes_to_gemm_when_few_rows_else_winograd(monkeypatch, size, path):
    """The PatchGAN's 4x4 stride-1 256->512 layer: 7x7 outputs (196 rows) as GEMMs,
    15x15 (900 rows) left to Winograd, which is faster there."""
    from colourise_tf.ops.conv import _gemm_pads, _winograd_pads

    monkeypatch.setattr(gemm_conv, "_avx512", lambda: False)
    block = ConvBlock(512, 4, 1, padding=1)
    x = tf.zeros([4, size, size, 256])
    block(x[:1, :8, :8], training=False)  # build
    conv = block.conv_layer
    gemm = _gemm_pads(x, conv.kernel, (1, 1), "VALID", 1)
    assert (gemm is not None) == (path == "gemm")
    assert _winograd_pads(x, conv.kernel, (1, 1), "VALID", 1) is not None  # Winograd would apply to both


def test_gan_step_with_gemm_convs_matches_plain_step_also_mirrored(monkeypatch):
    """One full GAN step of the tiny preset with every eligible conv forced onto the
    GEMM path gives the losses and updated weights of the plain step; so does the same
    under MirroredStrategy with two replicas (the custom gradients under tf.distribute)."""
    import keras

    from colourise_tf import config as config_lib
    from colourise_tf.training.runtime import make_strategy
    from colourise_tf.training.trainer import GANTrainer

    cfg = config_lib.apply_overrides(
        config_lib.get_preset("tiny"),
        [
            "data.batch_size=4",
            "model.generator.norm=instance",
            "model.discriminator.norm=instance",
            "model.generator.dropout=0.0",
        ],
    )
    s = cfg.model.image_size
    batch = {"image": tf.constant(np.random.default_rng(0).integers(0, 256, (4, s, s, 3), dtype=np.uint8))}
    calls = []
    for name in ("gemm_conv2d", "gemm_conv2d_transpose"):
        real = getattr(gemm_conv, name)
        monkeypatch.setattr(gemm_conv, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    monkeypatch.setattr(gemm_conv, "_avx512", lambda: False)
    monkeypatch.setattr(gemm_conv, "MIN_CHANNEL_PRODUCT", 1)

    def one_step(strategy, max_rows):
        monkeypatch.setattr(gemm_conv, "MAX_ROWS", max_rows)
        keras.utils.set_random_seed(7)
        trainer = GANTrainer(cfg, strategy)
        dist = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch).unbatch().batch(4))
        metrics = trainer.train_step(next(iter(dist)))
        weights = [v.numpy() for v in trainer.generator.trainable_variables + trainer.discriminator.trainable_variables]
        return weights, float(metrics["loss/g_total"]), float(metrics["loss/d_total"])

    plain = one_step(tf.distribute.get_strategy(), 0)
    assert not calls
    runs = [one_step(tf.distribute.get_strategy(), 10**9)]
    assert "gemm_conv2d" in calls and "gemm_conv2d_transpose" in calls
    if len(tf.config.list_logical_devices("CPU")) >= 2:
        mirrored = make_strategy("mirrored", cpu_replicas=2)
        assert mirrored.num_replicas_in_sync == 2
        runs.append(one_step(mirrored, 10**9))
    for weights, g_total, d_total in runs:
        assert g_total == pytest.approx(plain[1], rel=1e-4) and d_total == pytest.approx(plain[2], rel=1e-4)
        for a, b in zip(weights, plain[0]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
