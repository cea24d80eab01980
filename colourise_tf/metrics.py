"""Evaluation metrics for colourisation, in TensorFlow.

Every image metric takes a batch ``[B, H, W, C]`` and returns one float32 value **per
image** (shape ``[B]``); average over the test set yourself (``tf.reduce_mean`` or a
``keras.metrics.Mean``). Colour-distribution metrics accumulate histograms over a
whole test set (:class:`AbHistogram`) and compare them with :func:`js_divergence` /
:func:`kl_divergence`.

=====================  ===========================================================
metric                 definition (units)
=====================  ===========================================================
:func:`psnr`           ``10 log10(max_val^2 / MSE)`` on sRGB (dB), ``tf.image.psnr``
:func:`ssim`           Wang et al. (2004), ``tf.image.ssim``: 11x11 Gaussian, sigma 1.5,
                       K1 = 0.01, K2 = 0.03, population (co)variances, valid region
                       only, mean over pixels then over R, G, B. Equals scikit-image's
                       ``structural_similarity(gaussian_weights=True, sigma=1.5,
                       use_sample_covariance=False, data_range=1, channel_axis=-1)``.
:func:`ab_l1`          mean over pixels and over the two channels of ``|Δa|``, ``|Δb|``
                       (Lab units) -- Górriz et al. 2019 Table I "L1" (~10 for its models)
:func:`ab_l2`          mean over pixels of the Euclidean chroma error
                       ``sqrt(Δa² + Δb²)`` (Lab units, i.e. ΔE_ab at equal L)
:class:`PerceptualDistance`  Górriz et al. 2019 eq. 7 ``Lperc`` on VGG19 relu{1..5}_1
:func:`colourfulness`  Hasler & Süsstrunk (2003) ``M`` on the 0-255 scale
=====================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from colourise_tf.losses import FEATURE_BACKBONES, build_frozen_backbone, discriminator_accuracy

__all__ = [
    "psnr",
    "ssim",
    "ab_l1",
    "ab_l2",
    "PerceptualDistance",
    "PERCEPTUAL_LAYERS",
    "AbHistogram",
    "ab_histograms",
    "kl_divergence",
    "js_divergence",
    "histogram_divergences",
    "colourfulness",
    "discriminator_accuracy",
]


# --------------------------------------------------------------------- fidelity (RGB)


def psnr(rgb_true: tf.Tensor, rgb_pred: tf.Tensor, max_val: float = 1.0) -> tf.Tensor:
    """Peak signal-to-noise ratio per image (Górriz et al. 2019 Table I, Tarrés 2021 Tables 2-3).

    ``PSNR = 10 log10(max_val^2 / MSE)``, MSE over all pixels and the three RGB channels
    of one image (``tf.image.psnr``; identical images give ``+inf``).

    Args:
        rgb_true: ``[B, H, W, 3]`` sRGB, float in ``[0, max_val]``.
        rgb_pred: same shape.
        max_val: dynamic range (1.0 for float images).

    Returns:
        float32 ``[B]`` in dB.
    """
    return tf.image.psnr(tf.cast(rgb_true, tf.float32), tf.cast(rgb_pred, tf.float32), max_val=max_val)


def ssim(rgb_true: tf.Tensor, rgb_pred: tf.Tensor, max_val: float = 1.0) -> tf.Tensor:
    """Structural similarity per image (Wang et al., IEEE TIP 2004), via ``tf.image.ssim``.

    11x11 Gaussian window with sigma = 1.5, ``K1 = 0.01``, ``K2 = 0.03``,
    ``C_i = (K_i max_val)^2``, population (not sample) statistics; the SSIM map is
    computed on the "valid" region (no padding, so a 5-pixel border is dropped), then
    averaged over pixels and over the RGB channels. This equals scikit-image's
    ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=max_val, channel_axis=-1)`` (tested to
    1e-3; scikit-image's *default* uses a 7x7 uniform window and gives different
    numbers). Images must be at least 11x11. The value is at most 1 (Tarrés 2021 Table 3
    reports values above 1, which no SSIM definition allows).

    Args:
        rgb_true: ``[B, H, W, 3]`` sRGB in ``[0, max_val]``.
        rgb_pred: same shape.
        max_val: dynamic range.

    Returns:
        float32 ``[B]``.
    """
    return tf.image.ssim(
        tf.cast(rgb_true, tf.float32),
        tf.cast(rgb_pred, tf.float32),
        max_val=max_val,
        filter_size=11,
        filter_sigma=1.5,
        k1=0.01,
        k2=0.03,
    )


# ------------------------------------------------------------------- chroma (Lab units)


def _ab(lab_or_ab: tf.Tensor) -> tf.Tensor:
    """``[..., 3]`` Lab -> its ab; ``[..., 2]`` ab passed through (float32)."""
    x = tf.cast(lab_or_ab, tf.float32)
    channels = x.shape[-1]
    if channels == 3:
        return x[..., 1:]
    if channels == 2:
        return x
    raise ValueError(f"expected Lab [..., 3] or ab [..., 2], got shape {x.shape}")


def _mean_per_image(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def ab_l1(lab_true: tf.Tensor, lab_pred: tf.Tensor) -> tf.Tensor:
    """Mean absolute chroma error per image, in Lab units (Górriz et al. 2019 Table I "L1").

    ``L1 = 1 / (2 H W) * sum_p (|a_p - â_p| + |b_p - b̂_p|)`` -- the per-channel mean
    absolute error over a and b. Górriz et al. 2019 reports ~10 for its models, which is the
    magnitude of this definition on Lab units (the sum ``|Δa| + |Δb|`` would be ~2x).

    Args:
        lab_true: ``[B, H, W, 3]`` Lab (or ``[B, H, W, 2]`` ab), L in [0, 100].
        lab_pred: same.

    Returns:
        float32 ``[B]``.
    """
    return _mean_per_image(tf.abs(_ab(lab_true) - _ab(lab_pred)))


def ab_l2(lab_true: tf.Tensor, lab_pred: tf.Tensor) -> tf.Tensor:
    """Mean Euclidean chroma error per image, in Lab units.

    ``L2 = 1 / (H W) * sum_p sqrt((a_p - â_p)^2 + (b_p - b̂_p)^2)`` -- the mean per-pixel
    distance in the ab plane (CIE76 ΔE restricted to chroma), not an RMSE.

    Args:
        lab_true: ``[B, H, W, 3]`` Lab (or ``[B, H, W, 2]`` ab).
        lab_pred: same.

    Returns:
        float32 ``[B]``.
    """
    diff = _ab(lab_true) - _ab(lab_pred)
    return _mean_per_image(tf.norm(diff, axis=-1))


# ------------------------------------------------------------------------ perceptual

#: VGG19 layers of Górriz et al. 2019 eq. 7: relu{i}_1 = keras "block{i}_conv1" (conv + ReLU).
PERCEPTUAL_LAYERS: tuple[str, ...] = tuple(f"block{i}_conv1" for i in range(1, 6))


class PerceptualDistance:
    """Perceptual distance ``Lperc`` of Górriz et al. 2019 eq. 7 (Górriz et al., 2019).

    ``Lperc(x, y) = (1/L) * sum_{i=1..L} (1/N_i) * ||F_i(x) - F_i(y)||_1``

    with ``F_i`` the VGG19 (ImageNet) activations at ``relu{i}_1``, ``i = 1..5`` (keras
    layers ``block{i}_conv1``, whose activation is the ReLU), and ``N_i`` the number of
    elements of that feature volume, so each term is the mean absolute feature
    difference. Eq. 7 is typeset ``||.||²₁``; we read it as the plain (unsquared) L1
    norm because the text says "the L1 distance between the convolutional features
    ... is averaged". Inputs are sRGB ``[0, 1]``, preprocessed in-graph with VGG19's own
    ``preprocess_input`` on the 0-255 scale (RGB -> BGR, ImageNet mean subtracted).

    Args:
        weights: ``"imagenet"`` (default), ``None`` (random, tests) or a local
            ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` path.
        layers: VGG19 layer names; default :data:`PERCEPTUAL_LAYERS`.
    """

    def __init__(self, weights: str | None = "imagenet", layers: Sequence[str] = PERCEPTUAL_LAYERS) -> None:
        self.weights = weights
        self.layers = tuple(layers)
        self._preprocess = FEATURE_BACKBONES["vgg19"][1]
        self.feature_extractor = build_frozen_backbone("vgg19", list(self.layers), weights)

    def features(self, rgb: tf.Tensor) -> list[tf.Tensor]:
        """Float32 feature volumes ``F_i`` of sRGB ``[0, 1]`` images."""
        x = self._preprocess(tf.cast(rgb, tf.float32) * 255.0)
        feats = self.feature_extractor(x, training=False)
        return [tf.cast(f, tf.float32) for f in feats]

    def __call__(self, rgb_true: tf.Tensor, rgb_pred: tf.Tensor) -> tf.Tensor:
        """Returns float32 ``[B]``: ``Lperc`` of each image pair (real, generated)."""
        batch = tf.shape(rgb_true)[0]
        both = self.features(tf.concat([tf.cast(rgb_true, tf.float32), tf.cast(rgb_pred, tf.float32)], 0))
        terms = [_mean_per_image(tf.abs(f[:batch] - f[batch:])) for f in both]
        return tf.add_n(terms) / float(len(terms))

    def get_config(self) -> dict:
        return {"weights": self.weights, "layers": list(self.layers)}


# ------------------------------------------------------------ colour distributions


class AbHistogram:
    """Streaming histograms of the a and b channels over a whole test set (Tarrés 2021 §5).

    Bins: ``bins`` equal-width bins over ``value_range`` (default 220 bins of width 1
    over ``[-110, 110]``, the full :data:`colourise_tf.colour.AB_SCALE` range); bin ``i``
    covers ``[lo + i w, lo + (i+1) w)``, the last bin also includes ``hi``, and values
    outside the range are counted in the first/last bin (``tf.histogram_fixed_width``
    semantics). Counts are exact int64. The thesis' "logarithmic histograms" are these
    histograms plotted on a log y-axis; divergences are computed on the normalised
    (linear) histograms.

    Usage::

        real, fake = AbHistogram(), AbHistogram()
        for lab_true, lab_pred in test_set:
            real.update(lab_true); fake.update(lab_pred)
        histogram_divergences(real.result(), fake.result())

    Args:
        bins: number of bins per channel.
        value_range: ``(lo, hi)`` in Lab units.
    """

    def __init__(self, bins: int = 220, value_range: tuple[float, float] = (-110.0, 110.0)) -> None:
        if bins < 1 or not value_range[0] < value_range[1]:
            raise ValueError(f"invalid histogram: bins={bins}, value_range={value_range}")
        self.bins = int(bins)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.counts = tf.Variable(tf.zeros([2, self.bins], tf.int64), trainable=False, name="ab_histogram")

    @property
    def bin_edges(self) -> np.ndarray:
        """``bins + 1`` edges, float64."""
        return np.linspace(self.value_range[0], self.value_range[1], self.bins + 1)

    @property
    def bin_centers(self) -> np.ndarray:
        edges = self.bin_edges
        return 0.5 * (edges[:-1] + edges[1:])

    def update(self, lab_or_ab: tf.Tensor) -> None:
        """Adds every pixel of a batch: Lab ``[..., 3]`` or ab ``[..., 2]`` in Lab units."""
        ab = _ab(lab_or_ab)
        value_range = tf.constant(self.value_range, tf.float32)
        hists = [
            tf.histogram_fixed_width(tf.reshape(ab[..., c], [-1]), value_range, nbins=self.bins, dtype=tf.int32)
            for c in range(2)
        ]
        self.counts.assign_add(tf.cast(tf.stack(hists), tf.int64))

    def reset_state(self) -> None:
        self.counts.assign(tf.zeros_like(self.counts))

    def result(self, normalize: bool = True) -> tf.Tensor:
        """``[2, bins]`` (row 0 = a, row 1 = b): probabilities (float64) or int64 counts."""
        if not normalize:
            return tf.identity(self.counts)
        counts = tf.cast(self.counts, tf.float64)
        return tf.math.divide_no_nan(counts, tf.reduce_sum(counts, axis=-1, keepdims=True))


def ab_histograms(
    lab_batches_or_ab: tf.Tensor | Iterable[tf.Tensor],
    bins: int = 220,
    value_range: tuple[float, float] = (-110.0, 110.0),
) -> tf.Tensor:
    """Normalised a/b histograms of one tensor or an iterable of batches.

    See :class:`AbHistogram` for the bins.

    Args:
        lab_batches_or_ab: a Lab/ab tensor, or an iterable (e.g. a ``tf.data.Dataset``)
            of them.
        bins: bins per channel.
        value_range: ``(lo, hi)`` in Lab units.

    Returns:
        float64 ``[2, bins]``, each row summing to 1.
    """
    hist = AbHistogram(bins, value_range)
    if isinstance(lab_batches_or_ab, (tf.Tensor, np.ndarray, tf.Variable)):
        hist.update(lab_batches_or_ab)
    else:
        for batch in lab_batches_or_ab:
            hist.update(batch)
    return hist.result()


def _smooth(p: tf.Tensor, eps: float) -> tf.Tensor:
    p = tf.cast(p, tf.float64) + eps
    return p / tf.reduce_sum(p, axis=-1, keepdims=True)


def kl_divergence(p: tf.Tensor, q: tf.Tensor, eps: float = 1e-10) -> tf.Tensor:
    """Kullback-Leibler divergence ``KL(p || q)`` along the last axis, natural log (nats).

    Both histograms are smoothed and renormalised, ``p' = (p + eps) / sum(p + eps)``
    (likewise ``q'``), so empty bins give a finite value; then
    ``KL = sum_i p'_i ln(p'_i / q'_i)``. For evaluation use ``p`` = real data,
    ``q`` = generated (Tarrés 2021 does not state its order). Counts or probabilities are
    both accepted (normalisation is applied). Computed in float64.

    Args:
        p: ``[..., bins]``, e.g. :meth:`AbHistogram.result` ``[2, bins]`` -> ``[2]``.
        q: same shape.
        eps: additive smoothing per bin (on the normalised-or-count scale given).

    Returns:
        float64 ``[...]`` (one value per channel).
    """
    p_s, q_s = _smooth(p, eps), _smooth(q, eps)
    return tf.reduce_sum(p_s * (tf.math.log(p_s) - tf.math.log(q_s)), axis=-1)


def js_divergence(p: tf.Tensor, q: tf.Tensor, eps: float = 1e-10) -> tf.Tensor:
    """Jensen-Shannon divergence along the last axis, natural log (nats, in ``[0, ln 2]``).

    ``JS(p, q) = 0.5 KL(p' || m) + 0.5 KL(q' || m)``, ``m = (p' + q') / 2``, with the
    ``eps``-smoothed, renormalised ``p'``, ``q'`` of :func:`kl_divergence`. Symmetric;
    0 for identical histograms, ``ln 2`` (up to ``eps``) for disjoint supports.

    Args:
        p: ``[..., bins]``.
        q: same shape.
        eps: additive smoothing per bin.

    Returns:
        float64 ``[...]``.
    """
    p_s, q_s = _smooth(p, eps), _smooth(q, eps)
    m = 0.5 * (p_s + q_s)

    def kl(x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(x * (tf.math.log(x) - tf.math.log(m)), axis=-1)

    return 0.5 * kl(p_s) + 0.5 * kl(q_s)


def histogram_divergences(real_hist: tf.Tensor, fake_hist: tf.Tensor, eps: float = 1e-10) -> dict[str, float]:
    """Tarrés 2021 Table 2/3 columns from two ``[2, bins]`` histograms.

    Returns:
        ``{"js_a", "js_b", "kl_a", "kl_b"}`` as Python floats, ``KL(real || fake)``.
    """
    js = js_divergence(real_hist, fake_hist, eps).numpy()
    kl = kl_divergence(real_hist, fake_hist, eps).numpy()
    return {"js_a": float(js[0]), "js_b": float(js[1]), "kl_a": float(kl[0]), "kl_b": float(kl[1])}


# -------------------------------------------------------------------- colourfulness


def colourfulness(rgb: tf.Tensor) -> tf.Tensor:
    """Colourfulness ``M`` per image (Hasler & Süsstrunk, "Measuring colourfulness in
    natural images", SPIE 2003).

    On the 0-255 scale: ``rg = R - G``, ``yb = 0.5 (R + G) - B``;
    ``M = sqrt(σ_rg² + σ_yb²) + 0.3 sqrt(μ_rg² + μ_yb²)`` with the mean ``μ`` and the
    population standard deviation ``σ`` over the pixels of one image. A grey image
    scores 0.

    Args:
        rgb: ``[B, H, W, 3]`` sRGB, float in ``[0, 1]`` or uint8.

    Returns:
        float32 ``[B]``.
    """
    rgb = tf.convert_to_tensor(rgb)
    rgb = tf.cast(rgb, tf.float32) if rgb.dtype == tf.uint8 else tf.cast(rgb, tf.float32) * 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = tf.reshape(r - g, [tf.shape(rgb)[0], -1])
    yb = tf.reshape(0.5 * (r + g) - b, [tf.shape(rgb)[0], -1])
    mu_rg, var_rg = tf.nn.moments(rg, axes=[1])
    mu_yb, var_yb = tf.nn.moments(yb, axes=[1])
    # var can be a tiny negative from round-off; clamp so sqrt stays real.
    std_root = tf.sqrt(tf.maximum(var_rg + var_yb, 0.0))
    mean_root = tf.sqrt(tf.square(mu_rg) + tf.square(mu_yb))
    return std_root + 0.3 * mean_root
