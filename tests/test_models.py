"""Tests for the generators, discriminators and the model factory.

Presets are built at reduced width (8 filters per layer) but full depth, at the
smallest input their depth allows, so the whole file runs in well under a minute.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from colourise_tf import config as C
from colourise_tf import discriminators as D
from colourise_tf import generators as G
from colourise_tf import models
from colourise_tf.layers import ConvBlock, IBNorm, SpectralNorm

RNG = np.random.default_rng(0)


def _x(*shape):
    return RNG.uniform(-1.0, 1.0, shape).astype("float32")


def reduced(name: str, width: int = 8) -> C.ExperimentConfig:
    """The preset at full depth with ``width`` filters per layer (and 2 residual blocks)."""
    cfg = C.get_preset(name)
    m = cfg.model
    overrides = [
        "model.generator.filters=" + ",".join([str(width)] * len(m.generator.filters)),
        "model.discriminator.filters=" + ",".join([str(width)] * len(m.discriminator.filters)),
    ]
    if m.generator.kind == "resnet":
        overrides.append("model.generator.resnet_blocks=2")
    return C.apply_overrides(cfg, overrides)


def test_size(m: C.ModelConfig) -> int:
    if m.generator.kind.startswith("dcgan") or m.discriminator.kind == "dcgan":
        return m.image_size
    if m.generator.kind.startswith("unet"):
        return max(32, 2 ** len(m.generator.filters))
    return 32


test_size.__test__ = False  # a helper, not a test


def _all_blocks(model: keras.Model):
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, ConvBlock):
            yield layer


def _assert_same_outputs(a, b, x):
    ya = a(x, training=False)
    yb = b(x, training=False)
    ya = ya if isinstance(ya, list) else [ya]
    yb = yb if isinstance(yb, list) else [yb]
    assert len(ya) == len(yb)
    for p, q in zip(ya, yb):
        np.testing.assert_allclose(np.asarray(p), np.asarray(q), atol=1e-5)


@pytest.mark.parametrize("name", C.list_presets())
def test_every_preset_builds_runs_and_round_trips(name):
    cfg = reduced(name)
    m = cfg.model
    g, d = models.build_models(cfg)
    assert g.name == "generator"
    size = test_size(m)
    c_in = models.generator_input_channels(m)
    assert c_in == 1 + m.noise_channel + 3 * m.mask_channel
    x = _x(2, size, size, c_in)
    out = g(x, training=True)
    out = g(x, training=False)
    if m.generator.kind == "unet-seg-separate":
        chroma, seg = out
        assert tuple(chroma.shape) == (2, size, size, 2) and tuple(seg.shape) == (2, size, size, m.n_classes)
        assert seg.dtype == tf.float32
    else:
        chroma = out
        assert tuple(chroma.shape) == (2, size, size, models.generator_output_channels(m))
    assert chroma.dtype == tf.float32
    assert np.all(np.abs(chroma.numpy()) <= 1.0)
    # get_config round trip: same architecture, same numbers with the same weights.
    clone = keras.Model.from_config(g.get_config())
    assert clone.count_params() == g.count_params()
    clone.set_weights(g.get_weights())
    _assert_same_outputs(g, clone, x)

    if m.discriminator.kind == "none":
        assert d is None
        return
    assert d.name == "discriminator"
    c_d = models.discriminator_input_channels(m)
    assert c_d == 3 + m.mask_channel
    dx = _x(2, size, size, c_d)
    logits = d(dx, training=True)
    assert isinstance(logits, list) and len(logits) == m.num_scales
    for t in logits:
        assert t.dtype == tf.float32
    if m.discriminator.kind == "dcgan":
        assert [tuple(t.shape) for t in logits] == [(2, 1)]
    elif m.discriminator.kind == "pixelgan":
        assert [tuple(t.shape) for t in logits] == [(2, size, size, 1)]
    d_clone = type(d).from_config(d.get_config())
    assert type(d_clone) is type(d) is D.ListOutputModel
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(d))
    assert type(again) is D.ListOutputModel and isinstance(again(dx), list)
    d_clone.set_weights(d.get_weights())
    _assert_same_outputs(d, d_clone, dx)


def test_build_preset_is_one_call_and_none_discriminator():
    g, d = models.build_preset("tiny")
    assert d is not None and 3_000 < g.count_params() + d.count_params() < 10_000
    g, d = models.build_preset("unet-l1", ["model.generator.filters=8,8"])
    assert d is None and g.output_shape == (None, None, None, 2)


# ------------------------------------------------------------------ PatchGAN geometry


def test_patchgan_receptive_field_is_measured_70():
    """Support of d(one central logit)/d(input) on a positive-weight, norm-free PatchGAN."""
    net = D.patchgan_discriminator(3, (64, 128, 256, 512), norm="none", spectral_norm=False)
    for block in _all_blocks(net):
        conv = block.conv_layer
        k = conv.kernel
        fan_in = int(np.prod(k.shape[:-1]))
        conv.kernel.assign(np.full(k.shape, 1.0 / fan_in, np.float32))
        conv.bias.assign(np.zeros(conv.bias.shape, np.float32))
    size = 128
    x = tf.Variable(tf.ones((1, size, size, 3)))
    with tf.GradientTape() as tape:
        logits = net(x, training=False)
        n = logits.shape[1]
        centre = logits[0, n // 2, n // 2, 0]
    grad = tape.gradient(centre, x).numpy()[0].sum(-1)
    rows = np.nonzero(np.abs(grad).sum(1) > 0)[0]
    cols = np.nonzero(np.abs(grad).sum(0) > 0)[0]
    # Not clipped by the image border, contiguous, and 70 pixels wide in each direction.
    assert rows.min() > 0 and rows.max() < size - 1
    assert len(rows) == rows.max() - rows.min() + 1 == 70
    assert len(cols) == cols.max() - cols.min() + 1 == 70
    assert D.patchgan_receptive_field(4) == 70


def _conv_out(n: int, k: int, s: int, p: int) -> int:
    """Conv arithmetic (Dumoulin & Visin): out = floor((n + 2p - k) / s) + 1."""
    return (n + 2 * p - k) // s + 1


@pytest.mark.parametrize("size,scales", [(24, 1), (32, 1), (70, 1), (96, 3), (100, 3), (128, 3), (256, 3)])
def test_patchgan_output_sizes_follow_conv_arithmetic(size, scales):
    d = models.build_discriminator(
        C.ModelConfig(discriminator=C.DiscriminatorConfig(kind="patchgan", filters=(8, 8, 8, 8)), num_scales=scales)
    )
    outs = d(_x(1, size, size, 3))
    n = size
    for s, out in enumerate(outs):
        if s > 0:
            n = n // 2  # 2x2 average pooling per scale
        m = n
        # Three 4x4 stride-2 convs, a 4x4 stride-1 conv, the 4x4 stride-1 output conv; pad 1.
        for k, stride, pad in [(4, 2, 1), (4, 2, 1), (4, 2, 1), (4, 1, 1), (4, 1, 1)]:
            m = _conv_out(m, k, stride, pad)
        assert tuple(out.shape) == (1, m, m, 1)
        assert m == D.patchgan_output_size(n)
    if size == 256:
        assert [tuple(o.shape[1:3]) for o in outs] == [(30, 30), (14, 14), (6, 6)]


def test_patchgan_rejects_inputs_too_small_for_it():
    assert D.patchgan_min_input_size(4) == 24 and D.patchgan_output_size(24) == 1
    assert D.patchgan_output_size(23) < 1
    d = models.build_discriminator(
        C.ModelConfig(discriminator=C.DiscriminatorConfig(filters=(8, 8, 8, 8)), num_scales=3)
    )
    with pytest.raises(ValueError, match="minimum 24x24"):
        d(_x(1, 64, 64, 3))  # the x4 scale would see 16x16


# ------------------------------------------------------------------ parameter counts


def test_gorriz_unet_parameter_count_is_analytic():
    g = models.build_generator(C.get_preset("gorriz-bn").model)
    conv = lambda k, cin, cout, bias: k * k * cin * cout + (cout if bias else 0)  # noqa: E731
    bn = lambda c: 4 * c  # gamma, beta (trainable) + moving mean, variance  # noqa: E731
    layers = [
        # encoder: 4x4 stride-2 convs; e1 has a bias and no norm, the rest bias-free + BN
        ("e1", conv(4, 1, 64, True)),
        ("e2", conv(4, 64, 128, False) + bn(128)),
        ("e3", conv(4, 128, 256, False) + bn(256)),
        ("e4", conv(4, 256, 512, False) + bn(512)),
        ("e5", conv(4, 512, 512, False) + bn(512)),
        ("e6", conv(4, 512, 512, False) + bn(512)),
        ("e7", conv(4, 512, 512, False) + bn(512)),
        # decoder: 4x4 stride-2 transposed convs; input = previous output ++ skip
        ("d1", conv(4, 512, 512, False) + bn(512)),  # from e7
        ("d2", conv(4, 512 + 512, 512, False) + bn(512)),  # d1 ++ e6
        ("d3", conv(4, 512 + 512, 512, False) + bn(512)),  # d2 ++ e5
        ("d4", conv(4, 512 + 512, 256, False) + bn(256)),  # d3 ++ e4
        ("d5", conv(4, 256 + 256, 128, False) + bn(128)),  # d4 ++ e3
        ("d6", conv(4, 128 + 128, 64, False) + bn(64)),  # d5 ++ e2
        ("out", conv(4, 64 + 64, 2, True)),  # d6 ++ e1 -> ab
    ]
    expected = sum(n for _, n in layers)
    assert expected == 41_834_818
    assert g.count_params() == expected
    non_trainable = sum(int(np.prod(w.shape)) for w in g.non_trainable_weights)
    assert non_trainable == 2 * (128 + 256 + 512 * 4 + 512 * 3 + 256 + 128 + 64)


def test_patchgan70_parameter_count_is_analytic():
    d = models.build_discriminator(C.get_preset("pix2pix").model)
    expected = (
        (16 * 3 * 64 + 64)  # layer1, bias, no norm
        + (16 * 64 * 128 + 4 * 128)
        + (16 * 128 * 256 + 4 * 256)
        + (16 * 256 * 512 + 4 * 512)
        + (16 * 512 * 1 + 1)  # output conv
    )
    assert d.count_params() == expected == 2_767_425


# ------------------------------------------------------------------ IBN placement


def test_ibn_placement_follows_the_documented_rule():
    g, d = models.build_models(reduced("gorriz-ibn-sn-md", width=8))
    kinds = {}
    for b in _all_blocks(g):
        kinds[b.name] = (
            "ibn"
            if isinstance(b.norm_layer, IBNorm)
            else ("batch" if isinstance(b.norm_layer, keras.layers.BatchNormalization) else "none")
        )
    assert kinds == {
        "enc1": "none",
        "enc2": "ibn",
        "enc3": "ibn",
        "enc4": "ibn",
        "enc5": "batch",
        "enc6": "batch",
        "enc7": "batch",
        "dec1": "batch",
        "dec2": "batch",
        "dec3": "ibn",
        "dec4": "ibn",
        "dec5": "ibn",
        "dec6": "ibn",
        "chroma_conv": "none",
    }
    for scale in d.layers[1:]:
        if not isinstance(scale, keras.Model):
            continue
        dk = {b.name: type(b.norm_layer).__name__ for b in _all_blocks(scale)}
        assert dk == {
            "layer1": "NoneType",
            "layer2": "IBNorm",
            "layer3": "FusedBatchNormalization",
            "layer4": "FusedBatchNormalization",
            "output_conv": "NoneType",
        }
    # Every conv of G and D is spectrally normalised in this preset.
    assert all(b.spectral_norm for b in _all_blocks(g)) and all(b.spectral_norm for b in _all_blocks(d))


# ------------------------------------------------------------------ SN inside models


def test_spectral_norm_in_a_training_loop():
    keras.utils.set_random_seed(3)
    cfg = C.apply_overrides(
        C.get_preset("tiny"), ["model.discriminator.spectral_norm=true", "model.discriminator.norm=none"]
    )
    d = models.build_discriminator(cfg.model)
    opt = keras.optimizers.Adam(2e-4, beta_1=0.5)
    x = _x(2, 32, 32, 3)
    for _ in range(20):
        with tf.GradientTape() as tape:
            loss = tf.add_n([tf.reduce_mean(tf.nn.softplus(-o)) for o in d(x, training=True)])
        opt.apply_gradients(zip(tape.gradient(loss, d.trainable_variables), d.trainable_variables))
    # One power iteration per training call tracks the moving weights with a lag of a
    # few percent; a few more training calls on the final weights converge.
    for _ in range(30):
        d(x, training=True)
    sns = [layer for layer in d._flatten_layers(recursive=True) if isinstance(layer, SpectralNorm)]
    assert len(sns) == 3
    for sn in sns:
        w = sn.normalized_kernel().numpy()
        sigma_max = np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0]
        assert sigma_max == pytest.approx(1.0, abs=1e-2), sn.path
    # Inference: deterministic and no power-iteration update.
    state = [v.numpy().copy() for v in d.non_trainable_variables]
    a, b = d(x, training=False), d(x, training=False)
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    for v, s in zip(d.non_trainable_variables, state):
        np.testing.assert_array_equal(v.numpy(), s)


def test_generator_inference_is_deterministic_with_dropout_and_sn():
    cfg = C.apply_overrides(reduced("gorriz-bn-sn"), ["model.generator.dropout=0.5"])
    g = models.build_generator(cfg.model)
    x = _x(2, 128, 128, 1)
    g(x, training=True)
    state = [v.numpy().copy() for v in g.non_trainable_variables]
    np.testing.assert_array_equal(g(x, training=False).numpy(), g(x, training=False).numpy())
    for v, s in zip(g.non_trainable_variables, state):
        np.testing.assert_array_equal(v.numpy(), s)
    assert not np.array_equal(g(x, training=True).numpy(), g(x, training=True).numpy())  # dropout


# ------------------------------------------------------------------ other architectures


def test_pixelgan_tanh_head_returns_twice_the_pre_activation():
    d = D.pixelgan_discriminator(3, (8, 8, 8, 8), norm="batch", spectral_norm=False, tanh_head=True)
    x = _x(2, 6, 6, 3)
    z = keras.Model(d.input, d.get_layer("output_conv").output)(x, training=False)
    logit = d(x, training=False)
    np.testing.assert_allclose(logit.numpy(), 2.0 * z.numpy(), rtol=1e-6)
    # (tanh(z) + 1) / 2 == sigmoid(2 z): the paper's tanh "probability" is sigmoid(logit).
    np.testing.assert_allclose((np.tanh(z.numpy()) + 1) / 2, tf.sigmoid(logit).numpy(), atol=1e-6)
    # 1x1 convs only: receptive field of one pixel.
    x2 = x.copy()
    x2[:, 0, 0, :] += 1.0
    diff = np.abs(d(x2, training=False).numpy() - logit.numpy())[..., 0]
    assert diff[:, 0, 0].min() > 0 and np.count_nonzero(diff[:, 1:, :]) == np.count_nonzero(diff[:, :, 1:]) == 0


def test_dcgan_layers_and_advanced_variant():
    g = G.dcgan_generator(2, 2, (8, 8, 8, 8))
    names = [layer.name for layer in g.layers]
    assert [n for n in names if n.startswith("layer")] == [
        "layer1",
        "layer1_pool",
        "layer2",
        "layer3",
        "layer3_pool",
        "layer4",
        "layer5",
        "layer6",
        "layer7",
    ]
    adv = G.dcgan_generator(2, 2, (8, 8, 8, 8), advanced=True)
    concat = adv.get_layer("concat_input")
    assert concat.input[0] is adv.input  # the raw input is concatenated with the CNN output
    assert tuple(adv(_x(2, 64, 64, 2)).shape) == (2, 64, 64, 2)


def test_multiscale_inputs_are_average_pooled_copies_with_separate_weights():
    m = C.ModelConfig(discriminator=C.DiscriminatorConfig(kind="patchgan", filters=(8, 8), norm="none"), num_scales=3)
    d = models.build_discriminator(m)
    subs = [layer for layer in d.layers if isinstance(layer, keras.Model)]
    assert [s.name for s in subs] == ["patchgan_x1", "patchgan_x2", "patchgan_x4"]
    ids = [{id(v) for v in s.weights} for s in subs]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])
    x = _x(1, 64, 64, 3)
    pooled = x.reshape(1, 16, 4, 16, 4, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(d(x)[2].numpy(), subs[2](pooled).numpy(), atol=1e-5)


# ------------------------------------------------------------------ saving and precision


@pytest.mark.parametrize(
    "name",
    ["tiny", "gorriz-ibn-sn-md", "resnet-patchgan", "dcgan-sky-advanced", "tarres-seg-separate", "unet-pixelgan-sn"],
)
def test_keras_file_reloads_with_same_outputs(name, tmp_path):
    cfg = reduced(name) if name != "tiny" else C.get_preset(name)
    m = cfg.model
    g, d = models.build_models(cfg)
    size = test_size(m)
    x = _x(2, size, size, models.generator_input_channels(m))
    g(x, training=True)  # move BN statistics and SN vectors off their initial values
    g.save(tmp_path / "g.keras")
    _assert_same_outputs(g, keras.saving.load_model(tmp_path / "g.keras"), x)
    if d is not None:
        dx = _x(2, size, size, models.discriminator_input_channels(m))
        d(dx, training=True)
        d.save(tmp_path / "d.keras")
        d2 = keras.saving.load_model(tmp_path / "d.keras")
        assert isinstance(d2(dx), list)
        _assert_same_outputs(d, d2, dx)


def test_forward_under_mixed_bfloat16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        for name in ("gorriz-ibn-sn-md", "resnet-patchgan", "dcgan-sky-advanced", "unet-pixelgan-bn"):
            cfg = reduced(name)
            g, d = models.build_models(cfg)
            size = test_size(cfg.model)
            x = _x(2, size, size, models.generator_input_channels(cfg.model))
            y = g(x, training=True)
            assert y.dtype == tf.float32 and np.all(np.isfinite(y.numpy()))
            logits = d(tf.concat([x[..., :1], y], -1), training=True)
            assert all(t.dtype == tf.float32 and np.all(np.isfinite(t.numpy())) for t in logits)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert keras.mixed_precision.global_policy().name == previous.name


# ------------------------------------------------------------------ image size check


@pytest.mark.parametrize(
    "name,sizes",
    [
        ("tiny", (24, 30, 32)),
        ("resnet-patchgan", (26, 28)),
        ("dcgan-sky", (60, 64)),
        ("unet-pixelgan-bn", (24, 32, 40, 48)),
    ],
)
def test_check_image_size_agrees_with_the_generator_itself(name, sizes):
    """Sizes the check accepts run to a same-sized output; the ones it rejects do not."""
    base = reduced(name)
    g = models.build_generator(base.model)
    c_in = models.generator_input_channels(base.model)
    for size in sizes:
        m = dataclasses.replace(
            base.model, image_size=size, discriminator=C.DiscriminatorConfig(kind="none"), num_scales=1
        )
        try:
            models.check_image_size(m)
            accepted = True
        except ValueError as e:
            accepted = False
            assert f"model.image_size={size}" in str(e) and "multiple of" in str(e)
        try:
            out = g(_x(1, size, size, c_in))
            runs = tuple(out.shape[1:3]) == (size, size)
        except Exception:  # noqa: BLE001 -- Keras/TF raise several types for mismatched levels
            runs = False
        assert accepted == runs, (name, size, accepted, runs)


def test_check_image_size_names_the_smallest_patchgan_input():
    m = reduced("gorriz-ibn-sn-md").model  # 7-level U-Net, 3-scale 4-width PatchGAN
    with pytest.raises(ValueError, match=r"model.image_size=64 .*multiple of 128 \(e.g. 128\)"):
        models.check_image_size(dataclasses.replace(m, image_size=64))
    models.check_image_size(dataclasses.replace(m, image_size=128))
    # A 3-width PatchGAN needs 12 pixels (patchgan_min_input_size(3)) at its x4 scale.
    small_g = dataclasses.replace(
        m,
        generator=dataclasses.replace(m.generator, filters=(8, 8)),
        discriminator=dataclasses.replace(m.discriminator, filters=(8, 8, 8)),
    )
    need = D.patchgan_min_input_size(3)
    models.check_image_size(dataclasses.replace(small_g, image_size=4 * need))
    with pytest.raises(ValueError, match=rf"needs at least {need}x{need} \(model.image_size >= {4 * need}\)"):
        models.check_image_size(dataclasses.replace(small_g, image_size=4 * need - 4))
    with pytest.raises(ValueError, match="model.image_size=64"):
        models.build_models(C.apply_overrides(reduced("gorriz-ibn-sn-md"), ["model.image_size=64"]))
