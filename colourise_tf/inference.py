"""Full-resolution colourisation of arbitrary images, in the TF graph.

The generator sees a fixed ``model_size x model_size`` grey image (the whole input,
resized without cropping), so its prediction does not depend on the input's
resolution. Its chroma is resized back to the input's own size and recombined with
the ORIGINAL full-resolution lightness, so no detail is lost::

    rgb (any size) -> L at full res -> resize to model size -> G -> chroma
      -> resize chroma to full res -> x saturation gain -> + original L -> RGB

Everything here is TensorFlow ops only (no Python callbacks), so the same functions
serve the Keras path, the SavedModel signatures (TF Serving) and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from . import colour

ChromaFn = Callable[[tf.Tensor], tf.Tensor]


@dataclass(frozen=True)
class ModelSpec:
    """What the inference path needs to know about a generator.

    Attributes:
        image_size: the square size the generator runs at.
        colour_space: ``"lab"`` or ``"yuv"``.
        noise_channel: the generator takes an N(0, 1) channel after L (the DCGAN report).
        mask_channel: the generator takes a mask and 2 hint-chroma channels (the IMPA project).
        n_classes: > 0 for segmentation-aware generators (chroma per class).
    """

    image_size: int = 256
    colour_space: str = "lab"
    noise_channel: bool = False
    mask_channel: bool = False
    n_classes: int = 0

    @classmethod
    def from_model_config(cls, model_cfg) -> ModelSpec:
        """Builds a spec from :class:`colourise_tf.config.ModelConfig`."""
        return cls(
            image_size=int(model_cfg.image_size),
            colour_space=model_cfg.colour_space,
            noise_channel=bool(model_cfg.noise_channel),
            mask_channel=bool(model_cfg.mask_channel),
            n_classes=int(model_cfg.n_classes),
        )

    @property
    def input_channels(self) -> int:
        """``C_in`` of the generator: L, then 1 noise channel (the DCGAN report), then
        a mask and 2 hint chroma channels (the IMPA project)."""
        return 1 + int(self.noise_channel) + 3 * int(self.mask_channel)


def colours_inside_mask_only(spec: ModelSpec, cfg) -> bool:
    """Whether a mask model was trained with ``loss.mask_target=partial`` (the IMPA project's
    target): it colours only where its mask is set, from the mask alone (no hints), so
    callers without a mask give it a full one. Known from the experiment config
    (``cfg``, or ``None`` when unknown, as for TFLite files) only."""
    return bool(spec.mask_channel and cfg is not None and cfg.loss.mask_target == "partial")


def grey_of(rgb, colour_space: str = "lab") -> tf.Tensor:
    """The network-range grey channel (``[..., 1]`` in ``[-1, 1]``) of an RGB image."""
    grey, _ = colour.rgb_to_model(rgb, colour_space)
    return grey


def generator_input(
    grey_small: tf.Tensor,
    spec: ModelSpec,
    *,
    mask_small: tf.Tensor | None = None,
    hints_small: tf.Tensor | None = None,
    seed: tf.Tensor | None = None,
    full_mask: bool = False,
) -> tf.Tensor:
    """Builds G's input tensor at model size in the documented channel order
    (L, [noise], [mask, hint chroma]).

    Args:
        grey_small: ``[B, S, S, 1]`` network-range grey.
        spec: the model spec.
        mask_small, hints_small: ``[B, S, S, 1]`` and ``[B, S, S, 2]`` for mask
            models; zeros (no hints) when omitted.
        seed: int64 ``[2]`` stateless seed for the noise channel (0, 0 if omitted).
        full_mask: an omitted mask is all ones instead of zeros: for models that
            colour inside their mask only (:func:`colours_inside_mask_only`).
    """
    parts = [grey_small]
    if spec.noise_channel:
        seed = tf.zeros([2], tf.int64) if seed is None else tf.cast(seed, tf.int64)
        parts.append(tf.random.stateless_normal(tf.shape(grey_small), seed=seed))
    if spec.mask_channel:
        shape = tf.shape(grey_small)
        if mask_small is None:
            mask = tf.ones(shape) if full_mask else tf.zeros(shape)
        else:
            mask = tf.cast(mask_small, tf.float32)
        hints = (
            tf.zeros(tf.concat([shape[:-1], [2]], 0))
            if hints_small is None
            else tf.cast(hints_small, tf.float32) * mask
        )
        parts += [mask, hints]
    return tf.concat(parts, axis=-1)


def pick_chroma(outputs, spec: ModelSpec) -> tf.Tensor:
    """Reduces a generator's raw output(s) to ``[B, H, W, 2]`` chroma.

    Segmentation generators: the separate-decoder model's first output is the
    chroma; the shared-decoder model predicts chroma per class and, with no labels
    at inference, each pixel takes the class whose chroma is most saturated (a
    heuristic; Tarrés 2021 does not define inference for it).
    """
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    pred = tf.cast(outputs, tf.float32)
    if spec.n_classes and pred.shape[-1] == 2 * spec.n_classes:
        ab = tf.reshape(pred, tf.concat([tf.shape(pred)[:-1], [spec.n_classes, 2]], 0))
        idx = tf.argmax(tf.norm(ab, axis=-1), axis=-1)
        pred = tf.gather(ab, idx, batch_dims=3)
    return pred


def colourise_grey(
    grey_full: tf.Tensor,
    chroma_fn: ChromaFn,
    spec: ModelSpec,
    *,
    saturation: float | tf.Tensor = 1.0,
    mask_full: tf.Tensor | None = None,
    hints_full: tf.Tensor | None = None,
    seed: tf.Tensor | None = None,
    full_mask: bool = False,
) -> tf.Tensor:
    """Colourises network-range grey images of any size.

    Args:
        grey_full: ``[B, H, W, 1]`` grey in ``[-1, 1]`` at full resolution.
        chroma_fn: maps G's input ``[B, S, S, C]`` to its output (e.g. the Keras
            generator called with ``training=False``).
        spec: the model spec.
        saturation: chroma gain applied before recombination (1 = as predicted).
        mask_full, hints_full: optional full-resolution mask ``[B, H, W, 1]`` and
            hint chroma ``[B, H, W, 2]`` (network range) for mask models.
        seed: stateless seed for the noise channel.
        full_mask: see :func:`generator_input`.

    Returns:
        ``[B, H, W, 2]`` chroma at full resolution, network range, after the gain.
    """
    grey_full = tf.cast(grey_full, tf.float32)
    size = (spec.image_size, spec.image_size)
    full = tf.shape(grey_full)[1:3]
    grey_small = tf.image.resize(grey_full, size, method="area", antialias=True)
    mask_small = hints_small = None
    if mask_full is not None:
        mask_small = tf.cast(tf.image.resize(mask_full, size, method="nearest"), tf.float32)
    if hints_full is not None:
        hints_small = tf.image.resize(hints_full, size, method="nearest")
    g_in = generator_input(
        grey_small, spec, mask_small=mask_small, hints_small=hints_small, seed=seed, full_mask=full_mask
    )
    chroma_small = pick_chroma(chroma_fn(g_in), spec)
    chroma_full = tf.image.resize(chroma_small, full, method="bilinear")
    return colour.apply_saturation(chroma_full, saturation)


def colourise_rgb(
    rgb,
    chroma_fn: ChromaFn,
    spec: ModelSpec,
    *,
    saturation: float | tf.Tensor = 1.0,
    mask_full: tf.Tensor | None = None,
    hints_full: tf.Tensor | None = None,
    seed: tf.Tensor | None = None,
    full_mask: bool = False,
) -> tf.Tensor:
    """Colourises RGB (or grey-as-RGB) images from their own lightness.

    A colour input is first reduced to its L (or Y); the output keeps that exact
    lightness at full resolution.

    Args:
        rgb: ``[B, H, W, 3]`` uint8 or float ``[0, 1]``.
        chroma_fn, spec, saturation, mask_full, hints_full, seed, full_mask: see
            :func:`colourise_grey`.

    Returns:
        float32 sRGB ``[B, H, W, 3]`` in ``[0, 1]`` (out-of-gamut colours clipped).
    """
    grey = grey_of(rgb, spec.colour_space)
    chroma = colourise_grey(
        grey,
        chroma_fn,
        spec,
        saturation=saturation,
        mask_full=mask_full,
        hints_full=hints_full,
        seed=seed,
        full_mask=full_mask,
    )
    return colour.model_to_rgb(grey, chroma, spec.colour_space)


def keras_chroma_fn(generator) -> ChromaFn:
    """Wraps a Keras generator as a ``chroma_fn`` in inference mode (no dropout,
    no spectral-norm power iteration, batch-norm moving statistics)."""

    def fn(x):
        return generator(x, training=False)

    return fn


def to_uint8(rgb: tf.Tensor) -> tf.Tensor:
    """float ``[0, 1]`` -> uint8 with rounding."""
    return tf.cast(tf.round(tf.clip_by_value(rgb, 0.0, 1.0) * 255.0), tf.uint8)
