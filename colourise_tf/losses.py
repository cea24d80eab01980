"""Losses for GAN colourisation: adversarial pairs, reconstruction, feature, mask, segmentation.

Conventions shared by every loss in this module
-----------------------------------------------
* Pure functions of tensors; the result is a float32 scalar whatever the input dtype
  (mixed-precision logits are cast to float32 before any arithmetic).
* Adversarial losses take discriminator **logits** (raw outputs, no sigmoid) of any
  rank ``[B, ...]`` -- a PatchGAN map ``[B, H, W, 1]``, a vector ``[B]`` -- or a
  **list/tuple** of them, one per discriminator scale. Each map is reduced to the mean
  over all of its elements; the per-scale values are then **summed** (Górriz et al. 2019 eq. 6,
  ``V'(G, D) = sum_n V(G, D_n)``).
* Reduction (``global_batch_size``): every loss is defined as the mean over the batch
  of a per-example loss (for unweighted losses the per-example loss is the mean over
  that example's elements, so this is the plain mean over all elements). With
  ``global_batch_size=None`` the batch mean is returned. With an ``int`` the function
  returns the per-replica contribution ``sum_b loss_b / global_batch_size``, exactly as
  :func:`tf.nn.compute_average_loss` does, so summing the values of all replicas
  (``strategy.reduce(SUM, ...)`` or the implicit all-reduce of gradients) gives the
  global mean. On one replica with ``global_batch_size = B`` both paths agree.

References
----------
* Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014 (non-saturating loss).
* Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks"
  (pix2pix), CVPR 2017.
* Górriz et al., "End-to-End Conditional GAN-based Architectures for Image
  Colourisation", MMSP 2019 -- Górriz et al. 2019, eq. 4-6.
* Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017.
* Lim & Ye, "Geometric GAN", 2017; Miyato et al., "Spectral Normalization for GANs",
  ICLR 2018 (hinge loss).
* Johnson et al., "Perceptual Losses for Real-Time Style Transfer and
  Super-Resolution", ECCV 2016 (feature reconstruction loss) -- Tarrés 2021 §4.2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

__all__ = [
    "non_saturating_generator_loss",
    "non_saturating_discriminator_loss",
    "least_squares_generator_loss",
    "least_squares_discriminator_loss",
    "hinge_generator_loss",
    "hinge_discriminator_loss",
    "ADVERSARIAL_LOSSES",
    "get_adversarial_losses",
    "l1_loss",
    "smooth_l1_loss",
    "FeatureReconstructionLoss",
    "make_feature_reconstruction_loss",
    "FEATURE_BACKBONES",
    "build_frozen_backbone",
    "mask_loss",
    "segmentation_l1_loss",
    "select_class_chroma",
    "discriminator_accuracy",
]

#: A discriminator output: one map ``[B, ...]`` or a list of maps (one per scale).
Logits = tf.Tensor | Sequence[tf.Tensor]


# --------------------------------------------------------------------------- helpers


def _as_list(x: Logits) -> tuple[list[tf.Tensor], bool]:
    """Returns ``(list_of_float32_maps, was_a_list)``."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError("an empty list of discriminator outputs was given")
        return [tf.cast(t, tf.float32) for t in x], True
    return [tf.cast(x, tf.float32)], False


def _per_example_mean(x: tf.Tensor) -> tf.Tensor:
    """Mean over every axis but the first: ``[B, ...] -> [B]`` (rank <= 1 unchanged)."""
    if x.shape.rank is not None and x.shape.rank <= 1:
        return x
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def _reduce_batch(per_example: tf.Tensor, global_batch_size: int | None) -> tf.Tensor:
    """Batch mean, or ``sum / global_batch_size`` (per-replica share of the global mean)."""
    per_example = tf.cast(per_example, tf.float32)
    if global_batch_size is None:
        return tf.reduce_mean(per_example)
    if per_example.shape.rank == 0:
        raise ValueError("global_batch_size needs inputs with a leading batch axis")
    return tf.reduce_sum(per_example) / tf.cast(global_batch_size, tf.float32)


def _reduce_map(per_element: tf.Tensor, global_batch_size: int | None) -> tf.Tensor:
    """Mean of an element-wise loss map over all its elements (or per-replica share)."""
    if global_batch_size is None:
        return tf.reduce_mean(per_element)
    return _reduce_batch(_per_example_mean(per_element), global_batch_size)


def _sum_over_scales(fn: Callable[..., tf.Tensor], global_batch_size: int | None, *maps: Logits) -> tf.Tensor:
    """Applies ``fn`` (element-wise loss of one or two maps) per scale, reduces, sums."""
    lists = [_as_list(m)[0] for m in maps]
    n = len(lists[0])
    if any(len(lst) != n for lst in lists):
        raise ValueError(f"real and fake outputs have different numbers of scales: {[len(lst) for lst in lists]}")
    total = tf.constant(0.0, tf.float32)
    for scale_maps in zip(*lists):
        total += fn(*scale_maps, global_batch_size=global_batch_size)
    return total


# ----------------------------------------------------------------------- adversarial


def non_saturating_generator_loss(fake_logits: Logits, global_batch_size: int | None = None) -> tf.Tensor:
    """Non-saturating generator loss on logits ``l = D(x, G(x))`` before the sigmoid.

    ``L_G = E[-log sigmoid(l)] = E[softplus(-l)]``, i.e. the first term of Górriz et al. 2019
    eq. 5, ``-E[log D(X, G(X, Z))]``, the non-saturating form of Goodfellow et al.
    (2014) also used by pix2pix (Isola et al., 2017). Computed with ``softplus`` for
    numerical stability. Lists of maps (multi-scale discriminators) are summed over
    scales (Górriz et al. 2019 eq. 6).

    Args:
        fake_logits: discriminator logits on generated samples, ``[B, ...]`` or a list.
        global_batch_size: see the module docstring.

    Returns:
        float32 scalar.
    """

    def one(fake: tf.Tensor, global_batch_size: int | None) -> tf.Tensor:
        return _reduce_map(tf.nn.softplus(-fake), global_batch_size)

    return _sum_over_scales(one, global_batch_size, fake_logits)


def non_saturating_discriminator_loss(
    real_logits: Logits, fake_logits: Logits, global_batch_size: int | None = None
) -> tf.Tensor:
    """Standard GAN discriminator loss (binary cross-entropy) on logits.

    ``L_D = E[-log sigmoid(l_real)] + E[-log(1 - sigmoid(l_fake))]
          = E[softplus(-l_real)] + E[softplus(l_fake)]``,
    the negative of ``J(D)`` in Górriz et al. 2019 eq. 4 (Goodfellow et al., 2014). No ``1/2``
    factor (TF-GAN convention; pix2pix halves the D objective only to slow D down,
    which an optimiser's learning rate does as well). Multi-scale lists are summed.

    Args:
        real_logits: logits on real pairs ``D(x, y)``, ``[B, ...]`` or a list.
        fake_logits: logits on generated pairs ``D(x, G(x))``, same structure.
        global_batch_size: see the module docstring.

    Returns:
        float32 scalar.
    """

    def one(real: tf.Tensor, fake: tf.Tensor, global_batch_size: int | None) -> tf.Tensor:
        return _reduce_map(tf.nn.softplus(-real), global_batch_size) + _reduce_map(
            tf.nn.softplus(fake), global_batch_size
        )

    return _sum_over_scales(one, global_batch_size, real_logits, fake_logits)


def least_squares_generator_loss(fake_logits: Logits, global_batch_size: int | None = None) -> tf.Tensor:
    """LSGAN generator loss on the raw discriminator output (Mao et al., 2017).

    ``L_G = 0.5 * E[(D(G(x)) - 1)^2]`` -- Mao et al.'s eq. 2 with the 0-1 coding
    ``a = 0`` (fake), ``b = 1`` (real), ``c = 1`` (what G wants D to believe), keeping
    their ``1/2`` factor. (Górriz's Keras code uses ``mse`` without the ``1/2``; the
    factor only rescales the effective adversarial weight.) Multi-scale lists summed.

    Args:
        fake_logits: raw discriminator outputs on generated pairs, ``[B, ...]`` or list.
        global_batch_size: see the module docstring.

    Returns:
        float32 scalar.
    """

    def one(fake: tf.Tensor, global_batch_size: int | None) -> tf.Tensor:
        return 0.5 * _reduce_map(tf.square(fake - 1.0), global_batch_size)

    return _sum_over_scales(one, global_batch_size, fake_logits)


def least_squares_discriminator_loss(
    real_logits: Logits, fake_logits: Logits, global_batch_size: int | None = None
) -> tf.Tensor:
    """LSGAN discriminator loss on the raw discriminator output (Mao et al., 2017).

    ``L_D = 0.5 * (E[(D(x, y) - 1)^2] + E[D(x, G(x))^2])`` (targets 1 for real and 0
    for fake, Mao et al.'s ``1/2`` factor kept). Multi-scale lists are summed.

    Args:
        real_logits: raw outputs on real pairs, ``[B, ...]`` or a list.
        fake_logits: raw outputs on generated pairs, same structure.
        global_batch_size: see the module docstring.

    Returns:
        float32 scalar.
    """

    def one(real: tf.Tensor, fake: tf.Tensor, global_batch_size: int | None) -> tf.Tensor:
        return 0.5 * (
            _reduce_map(tf.square(real - 1.0), global_batch_size) + _reduce_map(tf.square(fake), global_batch_size)
        )

    return _sum_over_scales(one, global_batch_size, real_logits, fake_logits)


def hinge_generator_loss(fake_logits: Logits, global_batch_size: int | None = None) -> tf.Tensor:
    """Hinge generator loss (Lim & Ye, 2017; Miyato et al., 2018): ``L_G = -E[D(x, G(x))]``.

    Args:
        fake_logits: raw outputs on generated pairs, ``[B, ...]`` or a list (summed).
        global_batch_size: see the module docstring.

    Returns:
        float32 scalar.
    """

    def one(fake: tf.Tensor, global_batch_size: int | None) -> tf.Tensor:
        return _reduce_map(-fake, global_batch_size)

    return _sum_over_scales(one, global_batch_size, fake_logits)


def hinge_discriminator_loss(
    real_logits: Logits, fake_logits: Logits, global_batch_size: int | None = None
) -> tf.Tensor:
    """Hinge discriminator loss (Lim & Ye, 2017; Miyato et al., 2018).

    ``L_D = E[max(0, 1 - D(x, y))] + E[max(0, 1 + D(x, G(x)))]``. Multi-scale lists summed.

    Args:
        real_logits: raw outputs on real pairs, ``[B, ...]`` or a list.
        fake_logits: raw outputs on generated pairs, same structure.
        global_batch_size: see the module docstring.

    Returns:
        float32 scalar.
    """

    def one(real: tf.Tensor, fake: tf.Tensor, global_batch_size: int | None) -> tf.Tensor:
        return _reduce_map(tf.nn.relu(1.0 - real), global_batch_size) + _reduce_map(
            tf.nn.relu(1.0 + fake), global_batch_size
        )

    return _sum_over_scales(one, global_batch_size, real_logits, fake_logits)


#: name -> (generator_loss, discriminator_loss).
ADVERSARIAL_LOSSES: dict[str, tuple[Callable[..., tf.Tensor], Callable[..., tf.Tensor]]] = {
    "non_saturating": (non_saturating_generator_loss, non_saturating_discriminator_loss),
    "least_squares": (least_squares_generator_loss, least_squares_discriminator_loss),
    "hinge": (hinge_generator_loss, hinge_discriminator_loss),
}


def get_adversarial_losses(
    name: str,
) -> tuple[Callable[..., tf.Tensor], Callable[..., tf.Tensor]]:
    """Looks up ``(generator_loss, discriminator_loss)`` by name.

    Args:
        name: one of :data:`ADVERSARIAL_LOSSES` (``"non_saturating"``,
            ``"least_squares"``, ``"hinge"``).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    try:
        return ADVERSARIAL_LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown adversarial loss {name!r}; expected one of {sorted(ADVERSARIAL_LOSSES)}") from None


# -------------------------------------------------------------------- reconstruction


def _weighted_per_example_mean(values: tf.Tensor, weights: tf.Tensor | None) -> tf.Tensor:
    """``sum(w * v) / sum(w)`` per example (``w`` broadcast to ``v``); 0 where ``sum(w) = 0``."""
    if weights is None:
        return _per_example_mean(values)
    weights = tf.broadcast_to(tf.cast(weights, tf.float32), tf.shape(values))
    batch = tf.shape(values)[0]
    num = tf.reduce_sum(tf.reshape(weights * values, [batch, -1]), axis=1)
    den = tf.reduce_sum(tf.reshape(weights, [batch, -1]), axis=1)
    return tf.math.divide_no_nan(num, den)


def l1_loss(
    y_true: tf.Tensor,
    y_pred: tf.Tensor,
    mask: tf.Tensor | None = None,
    global_batch_size: int | None = None,
) -> tf.Tensor:
    """Mean absolute error, the regression term of pix2pix / Górriz et al. 2019 eq. 5.

    Without ``mask``: ``mean(|y_true - y_pred|)`` over all elements. With ``mask``
    (weights broadcastable to ``y_true``, e.g. ``[B, H, W, 1]``): the weighted mean per
    example, ``sum(w |e|) / sum(w)`` with ``w`` broadcast to ``e``'s shape (an example
    whose weights are all zero contributes 0), then the batch mean.

    Args:
        y_true: target, ``[B, ...]``.
        y_pred: prediction, same shape.
        mask: optional non-negative weights, broadcastable to ``y_true``.
        global_batch_size: see the module docstring.

    Returns:
        float32 scalar.
    """
    err = tf.abs(tf.cast(y_true, tf.float32) - tf.cast(y_pred, tf.float32))
    if mask is None and global_batch_size is None:
        return tf.reduce_mean(err)
    return _reduce_batch(_weighted_per_example_mean(err, mask), global_batch_size)


def smooth_l1_loss(
    y_true: tf.Tensor,
    y_pred: tf.Tensor,
    delta: float = 1.0,
    mask: tf.Tensor | None = None,
    global_batch_size: int | None = None,
) -> tf.Tensor:
    """Smooth L1, mean over elements (Girshick's Fast R-CNN loss; Tarrés 2021's baseline).

    ``s(e) = 0.5 e^2 / delta`` if ``|e| < delta`` else ``|e| - 0.5 delta`` with
    ``e = y_true - y_pred``: PyTorch's ``SmoothL1Loss(beta=delta)``, whose linear part
    keeps L1's unit slope, so it tends to L1 as ``delta -> 0``. It is the Huber loss
    (:class:`keras.losses.Huber`, Huber 1964) divided by ``delta``; the two agree at
    ``delta = 1``. Masking as in :func:`l1_loss`.

    Args:
        y_true: target, ``[B, ...]``.
        y_pred: prediction, same shape.
        delta: threshold between the quadratic and linear regimes (> 0).
        mask: optional non-negative weights, broadcastable to ``y_true``.
        global_batch_size: see the module docstring.

    Returns:
        float32 scalar.
    """
    abs_err = tf.abs(tf.cast(y_true, tf.float32) - tf.cast(y_pred, tf.float32))
    delta = tf.constant(delta, tf.float32)
    quad = tf.minimum(abs_err, delta)
    # (0.5 q^2 + delta (|e| - q)) / delta equals both branches and has a smooth gradient.
    smooth = (0.5 * tf.square(quad) + delta * (abs_err - quad)) / delta
    if mask is None and global_batch_size is None:
        return tf.reduce_mean(smooth)
    return _reduce_batch(_weighted_per_example_mean(smooth, mask), global_batch_size)


# ------------------------------------------------------------- feature reconstruction

#: backbone name -> (keras.applications constructor, preprocess_input, default layer).
FEATURE_BACKBONES: dict[str, tuple[Callable[..., keras.Model], Callable, str]] = {
    "vgg16": (
        keras.applications.VGG16,
        keras.applications.vgg16.preprocess_input,
        "block3_conv3",
    ),
    "vgg19": (
        keras.applications.VGG19,
        keras.applications.vgg19.preprocess_input,
        "block3_conv3",
    ),
    "resnet50": (
        keras.applications.ResNet50,
        keras.applications.resnet50.preprocess_input,
        # Stride 4 and 256 channels, like VGG16 block3_conv3 (the tarres-resnet50 preset).
        "conv2_block3_out",
    ),
}


def build_frozen_backbone(
    backbone: str,
    layers: str | Sequence[str],
    weights: str | None = "imagenet",
) -> keras.Model:
    """Builds a frozen float32 feature extractor from :data:`FEATURE_BACKBONES`.

    The backbone is created with ``include_top=False`` and a free spatial size,
    truncated at ``layers`` (one name -> one output, a list -> a list of outputs), set
    ``trainable = False`` and always built under the ``float32`` dtype policy (the
    global policy is restored afterwards), so it computes in float32 even when the
    training uses ``mixed_float16``: squared differences of activations of a few
    thousand would overflow float16.

    Args:
        backbone: ``"vgg16"``, ``"vgg19"`` or ``"resnet50"``.
        layers: layer name(s) of the keras.applications model.
        weights: ``"imagenet"`` (download, cached in ``~/.keras``), ``None`` (random
            initialisation, for tests) or a path to a local ``*_notop.h5`` weights file.

    Raises:
        ValueError: unknown backbone or layer name.
    """
    if backbone not in FEATURE_BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {sorted(FEATURE_BACKBONES)}")
    constructor = FEATURE_BACKBONES[backbone][0]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        base = constructor(include_top=False, weights=weights, input_shape=(None, None, 3))
        names = [layers] if isinstance(layers, str) else list(layers)
        known = {layer.name for layer in base.layers}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"{backbone} has no layer(s) {unknown}; see model.summary()")
        outputs = [base.get_layer(n).output for n in names]
        model = keras.Model(
            base.input,
            outputs[0] if isinstance(layers, str) else outputs,
            name=f"{backbone}_features",
        )
    finally:
        keras.config.set_dtype_policy(previous)
    model.trainable = False
    return model


class FeatureReconstructionLoss:
    """Feature reconstruction (perceptual) loss of Johnson et al. (2016), Tarrés 2021 §4.2.

    ``L_feat = 1 / (C_j H_j W_j) * ||phi_j(y_hat) - phi_j(y)||_2^2``, i.e. the mean over
    the feature map of the squared difference, where ``phi_j`` is a frozen ImageNet
    backbone truncated at layer ``j`` (the thesis' best: VGG16 ``block3_conv3``, weight
    ``1e-5`` in the generator objective; ResNet50 alternative ``conv2_block3_out``).
    Per example, then the batch mean (or per-replica share, see the module docstring).

    Inputs are **sRGB in [0, 1]** (convert the generator's Lab output with
    :func:`colourise_tf.colour.lab_to_rgb` first). In-graph, they are scaled to
    ``[0, 255]`` and passed through the backbone's own ``preprocess_input`` (VGG16/19
    and ResNet50: RGB -> BGR and subtraction of the ImageNet mean
    ``[103.939, 116.779, 123.68]``, "caffe" mode). The backbone runs in float32 with
    ``training=False``; gradients flow to the inputs only.

    Args:
        backbone: ``"vgg16"`` (default), ``"vgg19"`` or ``"resnet50"``.
        layer: feature layer; defaults to the backbone's entry in :data:`FEATURE_BACKBONES`.
        weights: ``"imagenet"`` (default), ``None`` or a path to a local weights file.
    """

    def __init__(
        self,
        backbone: str = "vgg16",
        layer: str | None = None,
        weights: str | None = "imagenet",
    ) -> None:
        if backbone not in FEATURE_BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; expected one of {sorted(FEATURE_BACKBONES)}")
        self.backbone = backbone
        self.layer = layer or FEATURE_BACKBONES[backbone][2]
        self.weights = weights
        self._preprocess = FEATURE_BACKBONES[backbone][1]
        self.feature_extractor = build_frozen_backbone(backbone, self.layer, weights)

    def preprocess(self, rgb: tf.Tensor) -> tf.Tensor:
        """sRGB ``[0, 1]`` -> the backbone's input (``preprocess_input`` on 0-255)."""
        return self._preprocess(tf.cast(rgb, tf.float32) * 255.0)

    def features(self, rgb: tf.Tensor) -> tf.Tensor:
        """Float32 features ``phi_j`` of sRGB ``[0, 1]`` images ``[B, H, W, 3]``."""
        feats = self.feature_extractor(self.preprocess(rgb), training=False)
        return tf.cast(feats, tf.float32)

    def __call__(
        self,
        y_true: tf.Tensor,
        y_pred: tf.Tensor,
        global_batch_size: int | None = None,
    ) -> tf.Tensor:
        """Returns the float32 scalar loss between target ``y_true`` and prediction ``y_pred``.

        Args:
            y_true: target sRGB ``[B, H, W, 3]`` in ``[0, 1]``.
            y_pred: predicted sRGB, same shape.
            global_batch_size: see the module docstring.
        """
        # One backbone pass over both halves: half the kernel launches.
        batch = tf.shape(y_true)[0]
        both = self.features(tf.concat([tf.cast(y_true, tf.float32), tf.cast(y_pred, tf.float32)], axis=0))
        diff = tf.square(both[batch:] - both[:batch])
        return _reduce_map(diff, global_batch_size)

    def get_config(self) -> dict:
        """Constructor arguments (the backbone itself is rebuilt, not serialised)."""
        return {"backbone": self.backbone, "layer": self.layer, "weights": self.weights}


def make_feature_reconstruction_loss(
    backbone: str = "vgg16",
    layer: str | None = "block3_conv3",
    weights: str | None = "imagenet",
) -> FeatureReconstructionLoss:
    """Factory for :class:`FeatureReconstructionLoss` (Tarrés 2021 §4.2 defaults).

    ``layer=None`` or the VGG default with a non-VGG backbone picks the backbone's
    default layer (``conv2_block3_out`` for ResNet50, the tarres-resnet50 preset's).
    """
    if backbone == "resnet50" and layer == "block3_conv3":
        layer = None
    return FeatureReconstructionLoss(backbone=backbone, layer=layer, weights=weights)


# ------------------------------------------------------------------------------ mask


def mask_loss(
    pred_chroma: tf.Tensor,
    hint_chroma: tf.Tensor,
    mask: tf.Tensor,
    global_batch_size: int | None = None,
) -> tf.Tensor:
    """Squared-L2 mask (hint) loss of the IMPA project (partial colourisation with binary masks).

    Per example ``b``::

        L_b = sum_p m_p * ||pred_p - hint_p||_2^2  /  sum_p m_p      (0 if sum_p m_p = 0)

    where ``p`` runs over pixels, ``||.||_2^2`` sums the squared difference over the
    chroma channels (a, b), and ``m`` is the binary mask (1 = the pixel's colour is
    prescribed). So it is the mean, over masked pixels, of the squared Euclidean chroma
    error. The batch value is the mean of ``L_b`` over all examples, examples with an
    empty mask counting as 0 (this keeps the distributed ``global_batch_size`` sum
    exact). An empty mask gives exactly 0 with zero (finite) gradients.

    To train the IMPA project's "colour only where the mask is on" target, pass
    ``hint = mask * ab_true`` and ``mask = ones``.

    Args:
        pred_chroma: generated chroma ``[B, H, W, C]`` (C = 2 for ab).
        hint_chroma: prescribed chroma, same shape (same units as the prediction).
        mask: ``[B, H, W]`` or ``[B, H, W, 1]``; values in {0, 1} (non-binary values
            act as per-pixel weights).
        global_batch_size: see the module docstring.

    Returns:
        float32 scalar.
    """
    pred = tf.cast(pred_chroma, tf.float32)
    hint = tf.cast(hint_chroma, tf.float32)
    mask = tf.cast(mask, tf.float32)
    if mask.shape.rank is not None and mask.shape.rank == pred.shape.rank:
        mask = mask[..., 0]
    sq = tf.reduce_sum(tf.square(pred - hint), axis=-1)  # [B, H, W]
    batch = tf.shape(sq)[0]
    num = tf.reduce_sum(tf.reshape(mask * sq, [batch, -1]), axis=1)
    den = tf.reduce_sum(tf.reshape(mask, [batch, -1]), axis=1)
    return _reduce_batch(tf.math.divide_no_nan(num, den), global_batch_size)


# ---------------------------------------------------------------------- segmentation


def _class_chroma(pred: tf.Tensor, n_classes: int) -> tf.Tensor:
    """``[B, H, W, 2K]`` ordered ``[a_0, b_0, a_1, b_1, ...]`` -> ``[B, H, W, K, 2]``."""
    pred = tf.cast(pred, tf.float32)
    if pred.shape[-1] is not None and pred.shape[-1] != 2 * n_classes:
        raise ValueError(f"expected 2 * n_classes = {2 * n_classes} chroma channels, got {pred.shape[-1]}")
    shape = tf.shape(pred)
    return tf.reshape(pred, tf.concat([shape[:-1], [n_classes, 2]], axis=0))


def _labels(seg_labels: tf.Tensor) -> tf.Tensor:
    labels = tf.convert_to_tensor(seg_labels)
    if labels.shape.rank == 4:
        labels = labels[..., 0]
    return tf.cast(labels, tf.int32)


def segmentation_l1_loss(
    pred: tf.Tensor,
    target_ab: tf.Tensor,
    seg_labels: tf.Tensor,
    n_classes: int,
    global_batch_size: int | None = None,
) -> tf.Tensor:
    """Per-class L1 chroma loss of the segmentation-aware U-Net (Tarrés 2021 §4.3).

    The generator predicts one chroma pair per class, channels ordered
    ``[a_0, b_0, a_1, b_1, ..., a_{K-1}, b_{K-1}]`` (class ``k`` owns channels
    ``2k, 2k+1``). For image ``b``, with ``P_bk`` the pixels labelled ``k`` and
    ``K_b = {k : |P_bk| > 0}`` the classes present in its ground truth::

        L_bk = 1 / (2 |P_bk|) * sum_{p in P_bk} (|a_k(p) - a(p)| + |b_k(p) - b(p)|)
        L_b  = 1 / |K_b| * sum_{k in K_b} L_bk          (0 if K_b is empty)

    i.e. each class's predicted ab is compared with the true ab only on that class's
    pixels, and the loss averages only over classes present in the image (the thesis'
    own suggestion, §5.2.2, after training on all classes collapsed to grey). Labels
    outside ``[0, K)`` -- e.g. Pascal VOC's 255 "void" boundary -- are ignored. Batch:
    mean of ``L_b`` (or the per-replica share, see the module docstring).

    Args:
        pred: ``[B, H, W, 2 * n_classes]`` predicted chroma (any units; same as target).
        target_ab: ``[B, H, W, 2]`` ground-truth chroma.
        seg_labels: ``[B, H, W]`` or ``[B, H, W, 1]`` integer class labels.
        n_classes: number of classes ``K`` (21 for Pascal VOC incl. background).
        global_batch_size: see the module docstring.

    Returns:
        float32 scalar.
    """
    per_class = _class_chroma(pred, n_classes)  # [B, H, W, K, 2]
    target = tf.cast(target_ab, tf.float32)[..., tf.newaxis, :]  # [B, H, W, 1, 2]
    err = tf.reduce_sum(tf.abs(per_class - target), axis=-1)  # [B, H, W, K]
    onehot = tf.one_hot(_labels(seg_labels), n_classes, dtype=tf.float32)  # 0 for void
    err_sum = tf.reduce_sum(onehot * err, axis=[1, 2])  # [B, K]
    count = tf.reduce_sum(onehot, axis=[1, 2])  # [B, K]
    class_loss = tf.math.divide_no_nan(err_sum, 2.0 * count)
    present = tf.cast(count > 0, tf.float32)
    per_image = tf.math.divide_no_nan(tf.reduce_sum(class_loss * present, axis=-1), tf.reduce_sum(present, axis=-1))
    return _reduce_batch(per_image, global_batch_size)


def select_class_chroma(pred: tf.Tensor, seg_labels: tf.Tensor) -> tf.Tensor:
    """Picks each pixel's own class's chroma from a per-class prediction.

    ``out[b, y, x] = pred[b, y, x, 2k : 2k + 2]`` with ``k = seg_labels[b, y, x]``
    (channel order as in :func:`segmentation_l1_loss`); pixels whose label is outside
    ``[0, K)`` get ``(0, 0)`` (grey). Used at inference/visualisation time with ground
    truth or predicted labels.

    Args:
        pred: ``[B, H, W, 2K]``.
        seg_labels: ``[B, H, W]`` or ``[B, H, W, 1]`` integers.

    Returns:
        float32 ``[B, H, W, 2]``.
    """
    if pred.shape[-1] is None or pred.shape[-1] % 2:
        raise ValueError(f"pred must have an even, static channel count, got {pred.shape}")
    n_classes = pred.shape[-1] // 2
    per_class = _class_chroma(pred, n_classes)
    onehot = tf.one_hot(_labels(seg_labels), n_classes, dtype=tf.float32)
    return tf.reduce_sum(per_class * onehot[..., tf.newaxis], axis=-2)


# ------------------------------------------------------------------------- accuracy


def discriminator_accuracy(
    real_logits: Logits, fake_logits: Logits, threshold: float = 0.0
) -> tuple[tf.Tensor, tf.Tensor] | tuple[list[tf.Tensor], list[tf.Tensor]]:
    """Discriminator accuracy on real and generated samples (reported in Ehrenberg).

    ``acc_real = mean(real_logits > threshold)``, ``acc_fake = mean(fake_logits < threshold)``
    over every element (every patch of a PatchGAN map). ``threshold = 0`` is the
    decision boundary of sigmoid logits (``D = 0.5``) and of tanh/hinge outputs; use
    ``0.5`` for least-squares discriminators trained on 0/1 targets.

    Args:
        real_logits: ``[B, ...]`` or a list of maps (one per scale).
        fake_logits: same structure.
        threshold: decision threshold on the raw output.

    Returns:
        ``(acc_real, acc_fake)`` float32 scalars, or two lists of per-scale scalars
        when lists were given.
    """
    reals, is_list = _as_list(real_logits)
    fakes, _ = _as_list(fake_logits)
    if len(reals) != len(fakes):
        raise ValueError("real and fake outputs have different numbers of scales")
    acc_real = [tf.reduce_mean(tf.cast(r > threshold, tf.float32)) for r in reals]
    acc_fake = [tf.reduce_mean(tf.cast(f < threshold, tf.float32)) for f in fakes]
    if is_list:
        return acc_real, acc_fake
    return acc_real[0], acc_fake[0]
