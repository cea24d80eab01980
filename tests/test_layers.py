"""Tests for colourise_tf.layers: ConvBlock, SpectralNorm, IBNorm, ReflectionPadding2D."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from colourise_tf.layers import (
    ConvBlock,
    IBNorm,
    ReflectionPadding2D,
    SpectralNorm,
    ibn_depth,
    resolve_norm,
)

RNG = np.random.default_rng(0)


def _x(*shape):
    return RNG.standard_normal(shape).astype("float32")


# The common layer contract (build, calls, a training step, bfloat16, config round trip)
# of every layer here is tests/test_layer_contract.py.


def test_conv_block_shapes_and_bias_rule():
    x = _x(1, 16, 16, 3)
    assert ConvBlock(8, 4, 2)(x).shape == (1, 8, 8, 8)
    assert ConvBlock(8, 4, 2, transpose=True)(x).shape == (1, 32, 32, 8)
    assert ConvBlock(8, 4, 1, padding=1)(x).shape == (1, 15, 15, 8)  # (16 + 2 - 4) / 1 + 1
    assert ConvBlock(8, 4, 2, padding=1)(x).shape == (1, 8, 8, 8)  # floor((16 + 2 - 4) / 2) + 1
    assert ConvBlock(8, norm="none").use_bias and not ConvBlock(8, norm="batch").use_bias


def test_reflection_padding_matches_numpy_and_round_trips():
    x = _x(2, 5, 6, 3)
    layer = ReflectionPadding2D(2)
    np.testing.assert_array_equal(layer(x).numpy(), np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect"))
    assert ReflectionPadding2D.from_config(layer.get_config()).padding == 2
    assert layer.compute_output_shape((None, None, 6, 3)) == (None, None, 10, 3)


# ------------------------------------------------------------------ spectral norm


def _svd_max(w: np.ndarray) -> float:
    return float(np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0])


@pytest.mark.parametrize(
    "layer,shape",
    [
        (lambda: keras.layers.Conv2D(16, 4, strides=2, padding="same"), (2, 16, 16, 8)),
        (lambda: keras.layers.Conv2DTranspose(8, 4, strides=2, padding="same"), (2, 8, 8, 16)),
        (lambda: keras.layers.Dense(12), (2, 20)),
    ],
)
def test_spectral_norm_sigma_matches_numpy_svd(layer, shape):
    keras.utils.set_random_seed(1)
    sn = SpectralNorm(layer())
    x = tf.constant(_x(*shape))
    sn.build(shape)
    raw_before = sn.kernel.numpy().copy()
    # One power iteration per training call; the error decays like (s2/s1)^(2n), and
    # random kernels have s2/s1 ~ 0.9, so give it 50 calls.
    for _ in range(50):
        sn(x, training=True)
    # The wrapped kernel variable is never overwritten (unlike the stock layer).
    np.testing.assert_array_equal(sn.kernel.numpy(), raw_before)
    w_raw = sn.kernel.numpy()
    # The effective kernel [k*k*c_in, c_out], divided by sigma as SN does, has spectral norm ~1.
    w_eff = sn.normalized_kernel().numpy()
    assert _svd_max(w_eff) == pytest.approx(1.0, abs=1e-2)
    assert float(sn.sigma()) == pytest.approx(_svd_max(w_raw), rel=1e-2)


def test_spectral_norm_inference_is_deterministic_and_stateless():
    sn = SpectralNorm(keras.layers.Conv2D(8, 3))
    x = _x(2, 8, 8, 4)
    sn(x, training=True)
    u, v = sn.vector_u.numpy().copy(), sn.vector_v.numpy().copy()
    y1, y2 = sn(x, training=False).numpy(), sn(x).numpy()
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(sn.vector_u.numpy(), u)
    np.testing.assert_array_equal(sn.vector_v.numpy(), v)
    # A training call advances the power iteration.
    sn(x, training=True)
    assert not np.array_equal(sn.vector_u.numpy(), u)
    # Inference output = conv with W / sigma(stored u, v).
    w = sn.normalized_kernel().numpy()
    ref = tf.nn.conv2d(x, w, 1, "VALID") + sn.layer.bias.numpy()
    np.testing.assert_allclose(sn(x).numpy(), ref.numpy(), atol=1e-5)


def test_spectral_norm_gradient_flows_through_sigma():
    sn = SpectralNorm(keras.layers.Dense(3, use_bias=False))
    x = _x(4, 5)
    sn.build(x.shape)
    sn(x, training=True)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(sn(x, training=False) ** 2)
    grad = tape.gradient(y, sn.layer.kernel).numpy()
    u, v = tf.constant(sn.vector_u.numpy()), tf.constant(sn.vector_v.numpy())
    w = tf.Variable(sn.layer.kernel.numpy())
    with tf.GradientTape() as tape:
        sigma = tf.matmul(tf.matmul(v, w), u, transpose_b=True)
        ref = tf.reduce_sum(tf.matmul(x, w / sigma) ** 2)
    np.testing.assert_allclose(grad, tape.gradient(ref, w).numpy(), rtol=1e-4, atol=1e-6)
    # ...which differs from treating sigma as a constant.
    with tf.GradientTape() as tape:
        ref_const = tf.reduce_sum(tf.matmul(x, w / tf.stop_gradient(sigma)) ** 2)
    assert not np.allclose(grad, tape.gradient(ref_const, w).numpy(), rtol=1e-3)


def test_spectral_norm_keeps_float32_master_weights_under_mixed_bfloat16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        sn = SpectralNorm(keras.layers.Conv2D(8, 3))
        x = _x(2, 8, 8, 4)
        sn.build(x.shape)
        sn.kernel.assign(sn.kernel.numpy() + 1e-5)  # not representable in bfloat16
        before = sn.kernel.numpy().copy()
        y = sn(x, training=True)
        assert y.dtype == tf.bfloat16 and sn.kernel.dtype == "float32"
        np.testing.assert_array_equal(sn.kernel.numpy(), before)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_spectral_norm_round_trip():
    sn = SpectralNorm(keras.layers.Conv2DTranspose(4, 4, strides=2, padding="same"), power_iterations=2)
    x = _x(1, 4, 4, 3)
    sn(x, training=True)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(sn))
    assert isinstance(clone, SpectralNorm) and clone.power_iterations == 2
    assert clone.built  # rebuilt from the serialised build config
    clone.set_weights(sn.get_weights())
    np.testing.assert_allclose(clone(x).numpy(), sn(x).numpy(), atol=1e-6)


# ------------------------------------------------------------------ IBN


def test_ibn_holds_instance_and_batch_statistics():
    layer = IBNorm(ratio=0.5, momentum=0.5)
    x = _x(4, 6, 6, 8) * 3.0 + 1.0
    layer.build(x.shape)
    assert layer.n_instance == 4
    # Instance half: affine scale/shift only, no stored statistics.
    assert [w.path.split("/")[-1] for w in layer.instance_norm.weights] == ["gamma", "beta"]
    assert layer.instance_norm.gamma.shape == (4,)
    # Batch half: scale/shift plus moving mean / variance for the other 4 channels.
    assert layer.batch_norm.moving_mean.shape == (4,) and layer.batch_norm.moving_variance.shape == (4,)
    y = layer(x, training=True).numpy()
    # First half: every sample normalised by its own spatial statistics.
    np.testing.assert_allclose(y[..., :4].mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(y[..., :4].std(axis=(1, 2)), 1.0, atol=1e-2)
    # Second half: normalised over the batch, not per sample.
    np.testing.assert_allclose(y[..., 4:].mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    assert np.abs(y[..., 4:].mean(axis=(1, 2))).max() > 1e-2
    # Only the batch half keeps running statistics.
    assert not np.allclose(layer.batch_norm.moving_mean.numpy(), 0.0)
    # Changing another sample changes the BN half of sample 0 in training, never its IN half.
    x2 = x.copy()
    x2[1:] *= 5.0
    y2 = layer(x2, training=True).numpy()
    np.testing.assert_allclose(y2[0, ..., :4], y[0, ..., :4], atol=1e-5)
    assert not np.allclose(y2[0, ..., 4:], y[0, ..., 4:], atol=1e-3)
    # At inference the BN half uses the moving statistics: one sample alone gives the same result.
    full = layer(x, training=False).numpy()
    np.testing.assert_allclose(layer(x[:1], training=False).numpy(), full[:1], atol=1e-5)
    clone = IBNorm.from_config(layer.get_config())
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x, training=False).numpy(), full, atol=1e-5)


def test_ibn_depth_rule_as_documented():
    # Górriz et al. 2019 U-Net: 7 levels -> S = 4.
    assert ibn_depth(7) == 4 and ibn_depth(4) == 2 and ibn_depth(3) == 2 and ibn_depth(2) == 1
    assert [resolve_norm("ibn", lvl, 7) for lvl in range(1, 8)] == ["ibn"] * 4 + ["batch"] * 3
    assert resolve_norm("ibn", 5, 7, ibn_levels=5) == "ibn"
    for norm in ("none", "batch", "instance"):
        assert resolve_norm(norm, 6, 7) == norm
    with pytest.raises(ValueError):
        resolve_norm("layer", 1, 7)


def test_fused_batch_norm_matches_keras_batch_norm():
    """Same outputs, gradients and moving mean as keras BN; the moving variance uses
    the unbiased batch variance (n/(n-1))."""
    import numpy as np
    import tensorflow as tf

    from colourise_tf.layers import FusedBatchNormalization

    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(2.0, 3.0, (2, 5, 7, 6)).astype(np.float32))
    kw = dict(momentum=0.9, epsilon=1e-3, gamma_initializer="random_normal", beta_initializer="random_normal")
    ref = keras.layers.BatchNormalization(**kw)
    fused = FusedBatchNormalization(**kw)
    ref.build(x.shape)
    fused.build(x.shape)
    fused.set_weights(ref.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y_ref = ref(x, training=True)
        y_fused = fused(x, training=True)
        l_ref = tf.reduce_sum(tf.sin(y_ref))
        l_fused = tf.reduce_sum(tf.sin(y_fused))
    np.testing.assert_allclose(y_fused.numpy(), y_ref.numpy(), atol=1e-4)
    for a, b in zip(
        tape.gradient(l_fused, [x, fused.gamma, fused.beta]), tape.gradient(l_ref, [x, ref.gamma, ref.beta])
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-4)
    n = 2 * 5 * 7
    batch_mean = x.numpy().mean(axis=(0, 1, 2))
    batch_var_unbiased = x.numpy().var(axis=(0, 1, 2)) * n / (n - 1)
    np.testing.assert_allclose(fused.moving_mean.numpy(), 0.1 * batch_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(), 0.9 + 0.1 * batch_var_unbiased, rtol=1e-5)
    # Inference uses the moving statistics exactly like the Keras layer.
    ref.moving_variance.assign(fused.moving_variance)
    ref.moving_mean.assign(fused.moving_mean)
    np.testing.assert_allclose(fused(x, training=False).numpy(), ref(x, training=False).numpy(), atol=1e-4)
    # Config round trip keeps the class.
    clone = FusedBatchNormalization.from_config(fused.get_config())
    assert isinstance(clone, FusedBatchNormalization) and clone.momentum == 0.9


# ------------------------------------------------------------------ fast paths vs references


def _ibn_reference(x, layer, training):
    """IBN the slow, obvious way: slice, Keras GroupNorm / BatchNorm, concatenate."""
    k = layer.n_instance
    inn = keras.layers.GroupNormalization(groups=-1, epsilon=layer.epsilon)
    bn = keras.layers.BatchNormalization(epsilon=max(layer.epsilon, 1.001e-5), momentum=layer.momentum)
    inn.build(x[..., :k].shape)
    bn.build(x[..., k:].shape)
    inn.set_weights(layer.instance_norm.get_weights())
    bn.set_weights(layer.batch_norm.get_weights())
    y = tf.concat([inn(x[..., :k]), bn(x[..., k:], training=training)], -1)
    return y, [inn.gamma, inn.beta, bn.gamma, bn.beta]


@pytest.mark.parametrize("channels, ratio", [(8, 0.5), (6, 0.2), (5, 0.75)])
def test_ibn_values_and_gradients_match_sliced_keras_reference(channels, ratio):
    rng = np.random.default_rng(channels)
    x = tf.constant(rng.normal(1.5, 3.0, (3, 5, 7, channels)).astype(np.float32))
    w = tf.constant(rng.normal(size=(3, 5, 7, channels)).astype(np.float32))
    layer = IBNorm(ratio=ratio, momentum=0.8, gamma_init="normal")
    layer.build(x.shape)
    # Non-trivial affine parameters and moving statistics.
    layer.set_weights(
        [
            rng.normal(1.0, 0.5, v.shape).astype(np.float32)
            if "variance" not in v.path
            else rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
            for v in layer.weights
        ]
    )
    for training in (True, False):
        params = [layer.instance_norm.gamma, layer.instance_norm.beta, layer.batch_norm.gamma, layer.batch_norm.beta]
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            y_ref, ref_params = _ibn_reference(x, layer, training)
            y = layer(x, training=training)
            l_ref, l = tf.reduce_sum(tf.sin(y_ref) * w), tf.reduce_sum(tf.sin(y) * w)
        np.testing.assert_allclose(y.numpy(), y_ref.numpy(), atol=1e-4)
        for a, b in zip(tape.gradient(l, [x] + params), tape.gradient(l_ref, [x] + ref_params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-4)


def test_ibn_moving_statistics_follow_fused_batch_norm_convention():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (4, 6, 5, 8)).astype(np.float32)
    layer = IBNorm(ratio=0.5, momentum=0.9)
    layer(x, training=True)
    half = x[..., 4:]
    n = 4 * 6 * 5
    np.testing.assert_allclose(layer.batch_norm.moving_mean.numpy(), 0.1 * half.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        layer.batch_norm.moving_variance.numpy(), 0.9 + 0.1 * half.var((0, 1, 2)) * n / (n - 1), rtol=1e-4
    )


def test_ibn_under_mixed_bfloat16_keeps_float32_statistics():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = IBNorm()
        x = tf.constant(np.random.default_rng(1).normal(50.0, 2.0, (2, 8, 8, 6)).astype(np.float32))
        y = layer(x, training=True)
        assert y.dtype == tf.bfloat16
        # A large mean and small spread: bfloat16 statistics would lose it entirely.
        yf = tf.cast(y, tf.float32).numpy()
        np.testing.assert_allclose(yf[..., :3].std(axis=(1, 2)), 1.0, atol=0.05)
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_conv_block_explicit_padding_equals_zero_pad_then_valid_conv(spectral_norm):
    block = ConvBlock(6, 4, 2, padding=1, spectral_norm=spectral_norm, use_bias=True)
    x = tf.constant(_x(2, 11, 9, 3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = block(x, training=False)
        loss = tf.reduce_sum(y * y)
    gx = tape.gradient(loss, x)
    kernel = block.conv.normalized_kernel() if spectral_norm else block.conv_layer.kernel
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        ref = tf.nn.conv2d(tf.pad(xt, [[0, 0], [1, 1], [1, 1], [0, 0]]), kernel, 2, "VALID") + block.conv_layer.bias
        loss_ref = tf.reduce_sum(ref * ref)
    gref = tape.gradient(loss_ref, xt)
    assert y.shape == ref.shape == (2, 5, 4, 6)
    np.testing.assert_allclose(y.numpy(), ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(gx.numpy(), gref.numpy(), atol=1e-4)


@pytest.mark.parametrize(
    "layer, shape",
    [
        # kernel smallest -> W / sigma; input smallest -> x / sigma; output smallest -> y / sigma
        (lambda: keras.layers.Conv2D(3, 3), (2, 16, 16, 2)),
        (lambda: keras.layers.Conv2D(64, 4, strides=2, padding="same"), (1, 2, 2, 64)),
        (lambda: keras.layers.Conv2D(8, 4, strides=2, padding="same"), (1, 8, 8, 64)),
        (lambda: keras.layers.Conv2DTranspose(64, 4, strides=2, padding="same"), (1, 2, 2, 64)),
    ],
)
def test_spectral_norm_output_and_gradients_do_not_depend_on_where_sigma_is_applied(layer, shape):
    """conv(x, W/sigma) however it is evaluated (training calls pick the smallest of
    input, kernel and output): against a plain conv with W / sigma(u, v after the call)."""
    sn = SpectralNorm(layer())
    x = tf.constant(_x(*shape))
    sn.build(x.shape)
    sn(x, training=True)
    with tf.GradientTape() as tape:
        y = sn(x, training=True)
        loss = tf.reduce_sum(tf.sin(y))
    g = tape.gradient(loss, sn.layer.kernel)
    np.testing.assert_allclose(sn(x, training=False).numpy(), y.numpy(), atol=1e-5)  # inference: same W / sigma
    w = tf.Variable(sn.layer.kernel.numpy())
    u, v = tf.constant(sn.vector_u.numpy()), tf.constant(sn.vector_v.numpy())
    inner = sn.layer
    with tf.GradientTape() as tape:
        sigma = tf.matmul(tf.matmul(v, tf.reshape(w, [-1, w.shape[-1]])), u, transpose_b=True)
        wn = w / sigma
        if isinstance(inner, keras.layers.Conv2DTranspose):
            out_shape = [shape[0], shape[1] * 2, shape[2] * 2, w.shape[2]]
            ref = tf.nn.conv2d_transpose(x, wn, out_shape, 2, "SAME")
        else:
            ref = tf.nn.conv2d(x, wn, inner.strides[0], inner.padding.upper())
        ref = ref + inner.bias
        loss_ref = tf.reduce_sum(tf.sin(ref))
    np.testing.assert_allclose(y.numpy(), ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(g.numpy(), tape.gradient(loss_ref, w).numpy(), rtol=1e-3, atol=1e-5)


def _block_outputs_and_grads(block, x):
    """``block(x)`` and the gradients of a fixed loss w.r.t. ``x`` and the conv kernel."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = block(x)
        loss = tf.reduce_sum(tf.sin(y) + y * y)
    gx, gk = tape.gradient(loss, [x, block.conv_layer.kernel])
    return y.numpy(), gx.numpy(), gk.numpy()


def _assert_same_outputs_and_grads(reference, other):
    (y0, gx0, gk0), (y1, gx1, gk1) = reference, other
    np.testing.assert_allclose(y1, y0, atol=1e-6)
    np.testing.assert_allclose(gx1, gx0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gk1, gk0, rtol=1e-5, atol=1e-5)
    assert np.abs(gk0).max() > 0.1


@pytest.mark.parametrize(
    "transpose, padding", [(False, "same"), (False, "valid"), (False, 1), (True, "same"), (True, "valid")]
)
def test_patch_filter_gradient_equals_native_gradient(monkeypatch, transpose, padding):
    """The GEMM kernel gradient used for deep layers equals TensorFlow's own."""
    from colourise_tf.ops import filter_grad

    rng = np.random.default_rng(5)
    x = tf.constant(rng.normal(size=(2, 6, 6, 5)).astype(np.float32))
    block = ConvBlock(7, 4, 2, transpose=transpose, padding=padding, use_bias=True)
    block.build(x.shape)
    results = []
    for min_kernel in (10**9, 1):  # native path, then the patches path
        monkeypatch.setattr(filter_grad, "_PATCH_GRAD_MIN_KERNEL", min_kernel)
        monkeypatch.setattr(filter_grad, "_PATCH_GRAD_MAX_ROWS", 10**9)
        results.append(_block_outputs_and_grads(block, x))
    _assert_same_outputs_and_grads(*results)


@pytest.mark.parametrize(
    "n, h, w, cin, cout, k, s, padding",
    [
        (2, 9, 7, 3, 5, 4, 1, "VALID"),
        (2, 8, 8, 3, 4, 4, 2, "SAME"),
        (1, 7, 9, 2, 3, 4, 2, "SAME"),  # odd sizes: TF pads more at the end
        (2, 9, 10, 3, 2, 4, 2, "VALID"),
        (2, 6, 5, 4, 3, 3, 1, "SAME"),
        (1, 12, 8, 2, 3, 4, 4, "SAME"),
    ],
)
def test_shifted_filter_gradient_equals_conv2d_backprop_filter(n, h, w, cin, cout, k, s, padding):
    """The shifted-GEMM kernel gradient is TF's Conv2DBackpropFilter, for any size."""
    from colourise_tf.ops.filter_grad import _shifted_matmul

    rng = np.random.default_rng(11)
    x = tf.constant(rng.normal(size=(n, h, w, cin)).astype(np.float32))
    y = tf.nn.conv2d(x, tf.zeros([k, k, cin, cout]), s, padding)
    dy = tf.constant(rng.normal(size=y.shape).astype(np.float32))
    ref = tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=[k, k, cin, cout], out_backprop=dy, strides=[1, s, s, 1], padding=padding
    )
    got = _shifted_matmul(x, dy, [k, k, cin, cout], (s, s), padding)
    assert got.shape == (k, k, cin, cout)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "transpose, padding", [(False, "same"), (False, "valid"), (False, 1), (True, "same"), (True, "valid")]
)
def test_shifted_filter_gradient_in_conv_block(monkeypatch, transpose, padding):
    """A ConvBlock on the shifted-GEMM path has TF's values and gradients."""
    from colourise_tf.ops import filter_grad

    rng = np.random.default_rng(6)
    x = tf.constant(rng.normal(size=(2, 8, 8, 5)).astype(np.float32))
    block = ConvBlock(6, 4, 2, transpose=transpose, padding=padding, use_bias=True)
    block.build(x.shape)
    results = []
    for shifted in (False, True):
        monkeypatch.setattr(filter_grad, "shifted_filter_gradient_wanted", lambda *a, on=shifted: on)
        results.append(_block_outputs_and_grads(block, x))
    _assert_same_outputs_and_grads(*results)


def test_shifted_filter_gradient_rule():
    from colourise_tf.ops.filter_grad import shifted_filter_gradient_wanted as wanted

    # PatchGAN layer 4 (256->512, 4x4, stride 1) and layer 3 (128->256, stride 2) in bf16.
    assert wanted([4, 4, 256, 512], (1, 1), tf.bfloat16)
    assert wanted([4, 4, 128, 256], (2, 2), tf.bfloat16)
    assert wanted([4, 4, 64, 256], (2, 2), tf.bfloat16)  # the U-Net's last 256->64 transposed conv
    # float32 keeps oneDNN's kernel; so do thin layers, 1-channel outputs and odd kernels.
    assert not wanted([4, 4, 256, 512], (1, 1), tf.float32)
    assert not wanted([4, 4, 256, 512], (1, 1), tf.float16)
    assert not wanted([4, 4, 64, 128], (2, 2), tf.bfloat16)
    assert not wanted([4, 4, 512, 1], (1, 1), tf.bfloat16)
    assert not wanted([3, 3, 512, 512], (2, 2), tf.bfloat16)


def test_patch_filter_gradient_rule():
    from colourise_tf.ops.filter_grad import patch_filter_gradient_wanted

    # Deep U-Net layers at batch 4: few positions, big kernels.
    assert patch_filter_gradient_wanted(4 * 2 * 2, 4 * 4 * 512 * 512, tf.float32)
    assert patch_filter_gradient_wanted(4 * 8 * 8, 4 * 4 * 1024 * 512, tf.float32)
    assert not patch_filter_gradient_wanted(4 * 16 * 16, 4 * 4 * 1024 * 256, tf.float32)
    assert patch_filter_gradient_wanted(4 * 16 * 16, 4 * 4 * 1024 * 256, tf.bfloat16)
    # Shallow layers: many positions or small kernels stay on the native kernel.
    assert not patch_filter_gradient_wanted(4 * 64 * 64, 4 * 4 * 64 * 128, tf.bfloat16)
    assert not patch_filter_gradient_wanted(16, 4 * 4 * 64 * 128, tf.float32)


def test_instance_normalization_equals_keras_group_normalization():
    from colourise_tf.layers import InstanceNormalization

    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(3.0, 2.0, (3, 6, 5, 4)).astype(np.float32))
    w = tf.constant(rng.normal(size=(3, 6, 5, 4)).astype(np.float32))
    ours = InstanceNormalization(epsilon=1e-5, gamma_initializer="random_normal", beta_initializer="random_normal")
    ref = keras.layers.GroupNormalization(groups=-1, epsilon=1e-5)
    ours.build(x.shape)
    ref.build(x.shape)
    ref.set_weights(ours.get_weights())
    assert [v.path.split("/")[-1] for v in ours.weights] == ["gamma", "beta"]
    for training in (True, False):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            y, y_ref = ours(x, training=training), ref(x)
            loss, loss_ref = tf.reduce_sum(tf.sin(y) * w), tf.reduce_sum(tf.sin(y_ref) * w)
        np.testing.assert_allclose(y.numpy(), y_ref.numpy(), atol=1e-4)
        for a, b in zip(
            tape.gradient(loss, [x, ours.gamma, ours.beta]), tape.gradient(loss_ref, [x, ref.gamma, ref.beta])
        ):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-4)
    clone = InstanceNormalization.from_config(ours.get_config())
    assert isinstance(clone, keras.layers.GroupNormalization) and clone.groups in (-1, 4)
