"""Tests for colourise_tf.losses: hand-computed values, shapes, scales, reductions."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from colourise_tf import losses

LN2, LN3 = math.log(2.0), math.log(3.0)


def c(x, dtype=tf.float32):
    return tf.constant(x, dtype)


# ----------------------------------------------------------------- adversarial values


def test_non_saturating_generator_hand_computed():
    # logits [0, ln 3] -> sigmoid [1/2, 3/4] -> -log -> [ln 2, ln 4/3]
    expected = (LN2 + math.log(4 / 3)) / 2
    got = losses.non_saturating_generator_loss(c([0.0, LN3]))
    assert got.dtype == tf.float32 and got.shape == ()
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)


def test_non_saturating_discriminator_hand_computed():
    # real [0, ln 3]: -log sigmoid = [ln 2, ln 4/3]
    # fake [ln 3, -ln 3]: sigmoid = [3/4, 1/4]; -log(1 - D) = [ln 4, ln 4/3]
    expected = (LN2 + math.log(4 / 3)) / 2 + (math.log(4) + math.log(4 / 3)) / 2
    got = losses.non_saturating_discriminator_loss(c([0.0, LN3]), c([LN3, -LN3]))
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)


def test_least_squares_hand_computed():
    # G: fake [0, 3] -> 0.5 * mean([(0-1)^2, (3-1)^2]) = 0.5 * (1 + 4) / 2 = 1.25
    np.testing.assert_allclose(float(losses.least_squares_generator_loss(c([0.0, 3.0]))), 1.25)
    # D: real [1, 3] -> mean([0, 4]) = 2; fake [0, -1] -> mean([0, 1]) = 0.5; 0.5 * 2.5
    got = losses.least_squares_discriminator_loss(c([1.0, 3.0]), c([0.0, -1.0]))
    np.testing.assert_allclose(float(got), 1.25)


def test_hinge_hand_computed():
    # G: -mean([0.5, -1.5]) = 0.5
    np.testing.assert_allclose(float(losses.hinge_generator_loss(c([0.5, -1.5]))), 0.5)
    # D: real [0.5, 2] -> relu(1 - r) = [0.5, 0] -> 0.25
    #    fake [-2, 0.5] -> relu(1 + f) = [0, 1.5] -> 0.75;  total 1.0
    got = losses.hinge_discriminator_loss(c([0.5, 2.0]), c([-2.0, 0.5]))
    np.testing.assert_allclose(float(got), 1.0)


def test_non_saturating_is_stable_for_large_logits():
    got = losses.non_saturating_discriminator_loss(c([200.0]), c([-200.0]))
    assert np.isfinite(float(got)) and float(got) < 1e-6
    np.testing.assert_allclose(float(losses.non_saturating_generator_loss(c([-200.0]))), 200.0)


GEN_FNS = [fns[0] for fns in losses.ADVERSARIAL_LOSSES.values()]
DISC_FNS = [fns[1] for fns in losses.ADVERSARIAL_LOSSES.values()]


@pytest.mark.parametrize("fn", GEN_FNS)
def test_generator_patch_map_equals_flattened(fn):
    patch = tf.random.stateless_normal([2, 3, 3, 1], seed=[1, 2])
    np.testing.assert_allclose(float(fn(patch)), float(fn(tf.reshape(patch, [-1]))), rtol=1e-6)


@pytest.mark.parametrize("fn", DISC_FNS)
def test_discriminator_patch_map_equals_flattened(fn):
    real = tf.random.stateless_normal([2, 3, 3, 1], seed=[1, 2])
    fake = tf.random.stateless_normal([2, 3, 3, 1], seed=[3, 4])
    flat = fn(tf.reshape(real, [-1]), tf.reshape(fake, [-1]))
    np.testing.assert_allclose(float(fn(real, fake)), float(flat), rtol=1e-6)


def _scales(seed):
    # Three PatchGAN-like maps of decreasing size, as from a 3-scale discriminator.
    return [tf.random.stateless_normal([2, s, s, 1], seed=[seed, i]) for i, s in enumerate((6, 3, 2))]


@pytest.mark.parametrize("fn", GEN_FNS)
def test_generator_lists_sum_over_scales(fn):
    fakes = _scales(5)
    expected = sum(float(fn(f)) for f in fakes)
    np.testing.assert_allclose(float(fn(fakes)), expected, rtol=1e-6)
    np.testing.assert_allclose(float(fn(tuple(fakes))), expected, rtol=1e-6)


@pytest.mark.parametrize("fn", DISC_FNS)
def test_discriminator_lists_sum_over_scales(fn):
    reals, fakes = _scales(6), _scales(7)
    expected = sum(float(fn(r, f)) for r, f in zip(reals, fakes))
    np.testing.assert_allclose(float(fn(reals, fakes)), expected, rtol=1e-6)


def test_mismatched_scale_counts_raise():
    with pytest.raises(ValueError, match="scales"):
        losses.hinge_discriminator_loss(_scales(1), _scales(2)[:2])


@pytest.mark.parametrize("fn", GEN_FNS)
def test_generator_global_batch_size(fn):
    fakes = _scales(8)
    mean = float(fn(fakes))
    np.testing.assert_allclose(float(fn(fakes, global_batch_size=2)), mean, rtol=1e-6)
    # Two "replicas" holding one example each: their contributions sum to the global mean.
    halves = [[f[i : i + 1] for f in fakes] for i in range(2)]
    summed = sum(float(fn(h, global_batch_size=2)) for h in halves)
    np.testing.assert_allclose(summed, mean, rtol=1e-6)


@pytest.mark.parametrize("fn", DISC_FNS)
def test_discriminator_global_batch_size(fn):
    reals, fakes = _scales(9), _scales(10)
    mean = float(fn(reals, fakes))
    np.testing.assert_allclose(float(fn(reals, fakes, global_batch_size=2)), mean, rtol=1e-6)
    summed = sum(
        float(fn([r[i : i + 1] for r in reals], [f[i : i + 1] for f in fakes], global_batch_size=2)) for i in range(2)
    )
    np.testing.assert_allclose(summed, mean, rtol=1e-6)


def test_global_batch_size_under_mirrored_strategy():
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices (tests/conftest.py)")
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
    reals, fakes = _scales(13), _scales(14)  # global batch 2: one example per replica
    pred = tf.random.stateless_normal([2, 4, 4, 2], seed=[15, 1])
    hint = tf.random.stateless_normal([2, 4, 4, 2], seed=[15, 2])
    mask = tf.cast(tf.random.stateless_uniform([2, 4, 4, 1], seed=[15, 3]) > 0.5, tf.float32)

    def shard(ctx):
        i = ctx.replica_id_in_sync_group
        take = lambda t: t[i : i + 1]  # noqa: E731
        return [take(r) for r in reals], [take(f) for f in fakes], take(pred), take(hint), take(mask)

    values = strategy.experimental_distribute_values_from_function(shard)

    @tf.function
    def run(vals):
        def replica_fn(r, f, p, h, m):
            return (
                losses.non_saturating_discriminator_loss(r, f, global_batch_size=2),
                losses.mask_loss(p, h, m, global_batch_size=2),
            )

        per_replica = strategy.run(replica_fn, args=vals)
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]

    d_loss, m_loss = run(values)
    np.testing.assert_allclose(float(d_loss), float(losses.non_saturating_discriminator_loss(reals, fakes)), rtol=1e-5)
    np.testing.assert_allclose(float(m_loss), float(losses.mask_loss(pred, hint, mask)), rtol=1e-5)


def test_global_batch_size_matches_compute_average_loss():
    fake = tf.random.stateless_normal([4, 3, 3, 1], seed=[11, 12])
    per_example = tf.reduce_mean(tf.nn.softplus(-fake), axis=[1, 2, 3])
    expected = tf.nn.compute_average_loss(per_example, global_batch_size=8)
    got = losses.non_saturating_generator_loss(fake, global_batch_size=8)
    np.testing.assert_allclose(float(got), float(expected), rtol=1e-6)


def test_float16_logits_give_float32_loss():
    got = losses.non_saturating_generator_loss(tf.constant([0.0, LN3], tf.float16))
    assert got.dtype == tf.float32


def test_registry():
    assert set(losses.ADVERSARIAL_LOSSES) == {"non_saturating", "least_squares", "hinge"}
    gen, disc = losses.get_adversarial_losses("least_squares")
    assert gen is losses.least_squares_generator_loss
    assert disc is losses.least_squares_discriminator_loss
    with pytest.raises(ValueError, match="hinge"):
        losses.get_adversarial_losses("wasserstein")


def test_adversarial_gradients_under_tf_function():
    logits = tf.Variable([[0.3, -0.2], [1.0, 2.0]])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = losses.non_saturating_generator_loss([logits, logits[:, :1]])
        return tape.gradient(loss, logits)

    assert np.all(np.isfinite(step().numpy()))


# ------------------------------------------------------------------- reconstruction


def test_l1_hand_computed_and_masked():
    y_true = c([[1.0, 2.0], [3.0, 4.0]])
    y_pred = c([[1.5, 2.0], [2.0, 6.0]])
    # |e| = [[.5, 0], [1, 2]] -> mean 3.5 / 4
    np.testing.assert_allclose(float(losses.l1_loss(y_true, y_pred)), 0.875)
    # mask keeps [.5] in example 0 (0.5 / 1) and [1, 2] in example 1 (3 / 2): mean 1.0
    mask = c([[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(float(losses.l1_loss(y_true, y_pred, mask=mask)), 1.0)
    # all-zero mask: 0, no NaN
    assert float(losses.l1_loss(y_true, y_pred, mask=tf.zeros_like(mask))) == 0.0
    np.testing.assert_allclose(float(losses.l1_loss(y_true, y_pred, global_batch_size=2)), 0.875, rtol=1e-6)


def test_l1_broadcast_mask_on_image():
    y_true = tf.zeros([1, 2, 2, 2])
    y_pred = tf.reshape(tf.range(8, dtype=tf.float32), [1, 2, 2, 2])
    mask = c([[[[1.0], [0.0]], [[0.0], [1.0]]]])  # keeps pixels 0 and 3: values 0,1,6,7
    np.testing.assert_allclose(float(losses.l1_loss(y_true, y_pred, mask=mask)), 14 / 4)


def test_smooth_l1_hand_computed():
    y_true = c([[0.0, 0.0], [0.0, 0.0]])
    y_pred = c([[0.5, 0.0], [-1.0, 3.0]])
    # |e| = .5 -> .5*.25 = .125; 0 -> 0; 1 -> .5*1 = .5; 3 -> 1*(3 - .5) = 2.5; mean 3.125/4
    np.testing.assert_allclose(float(losses.smooth_l1_loss(y_true, y_pred)), 0.78125)
    np.testing.assert_allclose(
        float(losses.smooth_l1_loss(y_true, y_pred)),
        float(keras.losses.Huber(delta=1.0)(tf.reshape(y_true, [-1]), tf.reshape(y_pred, [-1]))),
        rtol=1e-6,
    )
    # delta = 2 (PyTorch's beta): .5 -> .5*.25/2 = .0625; 1 -> .5/2 = .25; 3 -> 3 - 1 = 2; mean 2.3125/4
    np.testing.assert_allclose(float(losses.smooth_l1_loss(y_true, y_pred, delta=2.0)), 0.578125)
    # small delta: tends to L1 (Huber / delta), not to delta * L1
    np.testing.assert_allclose(
        float(losses.smooth_l1_loss(y_true, y_pred, delta=1e-3)), float(losses.l1_loss(y_true, y_pred)), atol=1e-3
    )


# ------------------------------------------------------------------------------ mask


def test_mask_loss_hand_computed():
    # B=2, H=1, W=2, C=2
    pred = c([[[[1.0, 1.0], [0.0, 0.0]]], [[[1.0, 2.0], [0.0, 0.0]]]])
    hint = c([[[[0.0, 0.0], [3.0, 4.0]]], [[[1.0, 0.0], [9.0, 9.0]]]])
    mask = c([[[1.0, 1.0]], [[1.0, 0.0]]])
    # ex 0: ||.||^2 = [1+1, 9+16] = [2, 25], both masked -> 27 / 2 = 13.5
    # ex 1: ||.||^2 = [0+4, 81+81], only the first masked -> 4 / 1 = 4
    expected = (13.5 + 4.0) / 2
    np.testing.assert_allclose(float(losses.mask_loss(pred, hint, mask)), expected)
    np.testing.assert_allclose(float(losses.mask_loss(pred, hint, mask[..., None])), expected)
    np.testing.assert_allclose(float(losses.mask_loss(pred, hint, mask, global_batch_size=2)), expected)


def test_mask_loss_empty_mask_is_zero_with_finite_gradient():
    pred = tf.Variable(tf.random.stateless_normal([2, 4, 4, 2], seed=[1, 1]))
    hint = tf.random.stateless_normal([2, 4, 4, 2], seed=[2, 2])
    with tf.GradientTape() as tape:
        loss = losses.mask_loss(pred, hint, tf.zeros([2, 4, 4, 1]))
    grad = tape.gradient(loss, pred)
    assert float(loss) == 0.0
    assert np.all(np.isfinite(grad.numpy())) and np.all(grad.numpy() == 0.0)


# ---------------------------------------------------------------------- segmentation


def test_segmentation_l1_hand_computed():
    n_classes = 3  # class 2 never appears: it must not dilute the average
    # image 0, 1x4 pixels: labels [0, 1, 1, 255 (void)]
    labels = tf.constant([[[0, 1, 1, 255]], [[255, 255, 255, 255]]], tf.int32)
    target = c([[[[10, 0], [0, 4], [2, 2], [50, 50]]], [[[0, 0]] * 4]])
    big = 100.0  # predictions of classes at pixels not of that class: ignored
    pred = c(
        [
            [
                [
                    [9, 1, big, big, big, big],  # p0, class 0: |9-10| + |1-0| = 2
                    [big, big, 0, 5, big, big],  # p1, class 1: |0-0| + |5-4| = 1
                    [big, big, 4, 2, big, big],  # p2, class 1: |4-2| + |2-2| = 2
                    [big] * 6,  # void
                ]
            ],
            [[[big] * 6] * 4],  # image 1: every pixel void -> loss 0
        ]
    )
    # image 0: L_0 = 2 / (2*1) = 1; L_1 = (1 + 2) / (2*2) = 0.75; present {0, 1}: (1 + .75)/2
    # image 1: no class present -> 0; batch mean = 0.875 / 2
    got = losses.segmentation_l1_loss(pred, target, labels, n_classes)
    np.testing.assert_allclose(float(got), 0.875 / 2, rtol=1e-6)
    got_4d = losses.segmentation_l1_loss(pred, target, labels[..., None], n_classes)
    np.testing.assert_allclose(float(got_4d), 0.875 / 2, rtol=1e-6)
    got_gbs = losses.segmentation_l1_loss(pred, target, labels, n_classes, global_batch_size=2)
    np.testing.assert_allclose(float(got_gbs), 0.875 / 2, rtol=1e-6)


def test_segmentation_l1_checks_channels():
    with pytest.raises(ValueError, match="2 \\* n_classes"):
        losses.segmentation_l1_loss(tf.zeros([1, 2, 2, 4]), tf.zeros([1, 2, 2, 2]), tf.zeros([1, 2, 2], tf.int32), 3)


def test_select_class_chroma():
    pred = c([[[[1, 2, 3, 4], [5, 6, 7, 8], [9, 9, 9, 9]]]])  # [a0, b0, a1, b1]
    labels = tf.constant([[[1, 0, 255]]])
    got = losses.select_class_chroma(pred, labels).numpy()
    np.testing.assert_array_equal(got, [[[[3, 4], [5, 6], [0, 0]]]])


# ------------------------------------------------------------------------- accuracy


def test_discriminator_accuracy():
    acc_real, acc_fake = losses.discriminator_accuracy(c([1.0, -1.0, 2.0, 0.5]), c([-1.0, -2.0, 1.0, 0.0]))
    assert float(acc_real) == 0.75  # 3 of 4 real logits > 0
    assert float(acc_fake) == 0.5  # 2 of 4 fake logits < 0 (0 is not < 0)
    reals, fakes = losses.discriminator_accuracy([c([[1.0], [1.0]]), c([-1.0])], [c([[-1.0], [1.0]]), c([-1.0])])
    assert [float(a) for a in reals] == [1.0, 0.0]
    assert [float(a) for a in fakes] == [0.5, 1.0]
    acc_real, _ = losses.discriminator_accuracy(c([0.6, 0.4]), c([0.0]), threshold=0.5)
    assert float(acc_real) == 0.5


# ------------------------------------------------------------- feature reconstruction

VGG_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)


@pytest.fixture(scope="module")
def vgg_loss():
    keras.utils.set_random_seed(0)
    return losses.make_feature_reconstruction_loss("vgg16", "block3_conv3", weights=None)


@pytest.fixture(scope="module")
def rgb_pair():
    x = tf.random.stateless_uniform([2, 32, 32, 3], seed=[3, 4])
    y = tf.clip_by_value(x + 0.1 * tf.random.stateless_normal([2, 32, 32, 3], seed=[5, 6]), 0, 1)
    return x, y


def test_feature_loss_zero_for_identical_positive_otherwise(vgg_loss, rgb_pair):
    x, y = rgb_pair
    assert float(vgg_loss(x, x)) == 0.0
    value = vgg_loss(x, y)
    assert value.dtype == tf.float32 and value.shape == ()
    assert float(value) > 0.0


def test_feature_loss_matches_manual_computation(vgg_loss, rgb_pair):
    x, y = rgb_pair

    def manual_preprocess(rgb):
        bgr = rgb.numpy()[..., ::-1] * 255.0  # RGB -> BGR on the 0-255 scale
        return tf.constant(bgr - VGG_MEAN_BGR)  # ImageNet mean subtraction

    extractor = vgg_loss.feature_extractor
    assert extractor.layers[-1].name == "block3_conv3"
    fx = extractor(manual_preprocess(x)).numpy()
    fy = extractor(manual_preprocess(y)).numpy()
    assert fx.shape == (2, 8, 8, 256)  # 32 / 2 / 2 after block1 and block2 pooling
    # Johnson et al.: ||phi(y_hat) - phi(y)||_2^2 / (C H W), averaged over the batch
    expected = np.mean([np.sum((fy[i] - fx[i]) ** 2) / fx[i].size for i in range(2)])
    np.testing.assert_allclose(float(vgg_loss(x, y)), expected, rtol=1e-4)
    np.testing.assert_allclose(float(vgg_loss(x, y, global_batch_size=2)), expected, rtol=1e-4)


def test_feature_loss_backbone_is_frozen(vgg_loss):
    extractor = vgg_loss.feature_extractor
    assert extractor.trainable_weights == []
    assert len(extractor.non_trainable_weights) > 0
    assert extractor.layers[-1].name == "block3_conv3"


def test_feature_loss_finite_gradients_through_lab(vgg_loss, rgb_pair):
    from colourise_tf import colour

    x, _ = rgb_pair
    lab = colour.rgb_to_lab(x)
    ab_pred = tf.Variable(colour.normalize_ab(lab[..., 1:]) * 0.5)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            rgb_pred = colour.lab_to_rgb(tf.concat([lab[..., :1], colour.denormalize_ab(ab_pred)], axis=-1))
            loss = vgg_loss(x, rgb_pred)
        return loss, tape.gradient(loss, ab_pred)

    loss, grad = step()
    assert float(loss) > 0.0
    assert np.all(np.isfinite(grad.numpy())) and np.any(grad.numpy() != 0.0)


def test_feature_loss_under_mixed_precision(rgb_pair):
    x, y = rgb_pair
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        loss = losses.FeatureReconstructionLoss("vgg16", "block1_conv2", weights=None)
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.config.dtype_policy().name == previous.name
    assert all(layer.compute_dtype == "float32" for layer in loss.feature_extractor.layers)
    value = loss(tf.cast(x, tf.float16), tf.cast(y, tf.float16))
    assert value.dtype == tf.float32 and np.isfinite(float(value))


def test_feature_loss_resnet50_option():
    f = losses.make_feature_reconstruction_loss("resnet50", weights=None)
    assert f.layer == "conv2_block3_out"  # the tarres-resnet50 preset's layer
    from colourise_tf import config as C

    assert C.get_preset("tarres-resnet50").loss.feature_layer == f.layer
    assert f.feature_extractor.trainable_weights == []
    x = tf.random.stateless_uniform([1, 32, 32, 3], seed=[7, 8])
    different = float(f(x, 1.0 - x))
    assert different > 0.0
    # Identical inputs: zero up to the backbone's rounding (oneDNN's AVX2 kernels give
    # the two rows of the stacked batch ~1e-11 apart; AVX-512 ones exactly equal).
    assert 0.0 <= float(f(x, x)) <= 1e-6 * different


def test_feature_loss_bad_arguments():
    with pytest.raises(ValueError, match="backbone"):
        losses.FeatureReconstructionLoss("alexnet", weights=None)
    with pytest.raises(ValueError, match="no layer"):
        losses.FeatureReconstructionLoss("vgg16", "block9_conv9", weights=None)
