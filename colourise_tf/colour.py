"""Colour science for colourise_tf, in pure TensorFlow.

This is the ONLY module that converts between colour spaces. The input pipeline,
the training step, the serving signatures, the CLI and the evaluation all call it,
so preprocessing cannot drift between them.

Conventions
-----------
* sRGB values are floats in ``[0, 1]`` (uint8 ``[0, 255]`` is accepted as input and
  divided by 255). The sRGB transfer curve (IEC 61966-2-1) is applied.
* CIE L*a*b* is relative to the D65 white point (2° observer), with the same
  RGB->XYZ matrix as :mod:`skimage.color`, so ``L`` is in ``[0, 100]`` and ``a``, ``b``
  lie in about ``[-86, 98]`` and ``[-108, 95]`` for sRGB colours.
* The network range is ``[-1, 1]``: ``L_norm = L / 50 - 1`` and ``ab_norm = ab / 110``
  (:data:`AB_SCALE` = 110 covers the whole sRGB gamut, so a ``tanh`` output can reach
  every displayable colour). Use :func:`normalize_l`, :func:`normalize_ab` and their
  inverses; never scale by hand.
* Every function computes in float32, whatever the global Keras mixed-precision
  policy is, and accepts tensors of any leading shape ``[..., 3]``.
* Every function is differentiable with finite gradients everywhere, including pure
  black and pure white: the branches of piecewise curves are evaluated on clamped
  arguments so the branch ``tf.where`` does not take cannot produce ``inf * 0 = NaN``
  in the backward pass.

YUV follows ITU-R BT.601 exactly as written in the DCGAN report (the ``dcgan-sky`` presets):
``Y = .299 R + .587 G + .114 B``, ``U = -.168736 R - .331264 G + .5 B``,
``V = .5 R - .418688 G - .081312 B`` and the inverse ``R = Y + 1.4075 V``,
``G = Y - .3455 U - .7169 V``, ``B = Y + 1.7790 U``, here on the float scale
(``Y`` in ``[0, 1]``, ``U``, ``V`` in ``[-0.5, 0.5]``; the paper's ``±128`` offsets are
the uint8 form). The paper's inverse coefficients are rounded, so RGB -> YUV -> RGB is
exact only to about 3e-3 (under one 8-bit level).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = [
    "L_SCALE",
    "AB_SCALE",
    "D65_WHITE",
    "to_float_rgb",
    "srgb_to_linear",
    "linear_to_srgb",
    "rgb_to_xyz",
    "xyz_to_rgb",
    "xyz_to_lab",
    "lab_to_xyz",
    "rgb_to_lab",
    "lab_to_rgb",
    "rgb_to_yuv",
    "yuv_to_rgb",
    "normalize_l",
    "denormalize_l",
    "normalize_ab",
    "denormalize_ab",
    "lab_to_model",
    "model_to_lab",
    "rgb_to_model",
    "model_to_rgb",
    "apply_saturation",
]

#: ``L`` in ``[0, 100]`` maps to ``[-1, 1]`` as ``L / L_SCALE - 1``.
L_SCALE = 50.0
#: ``a``/``b`` map to ``[-1, 1]`` as ``ab / AB_SCALE``.
AB_SCALE = 110.0

#: D65 reference white (2° observer), as in scikit-image.
D65_WHITE = (0.95047, 1.0, 1.08883)

# sRGB (linear) -> XYZ, the matrix scikit-image uses (ITU-R BT.709 primaries).
_XYZ_FROM_RGB = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=np.float64,
)
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)

# CIE constants: f(t) = t^(1/3) above DELTA^3, else t / (3 DELTA^2) + 4/29.
_DELTA = 6.0 / 29.0
_DELTA_CUBE = _DELTA**3
_LIN_SLOPE = 1.0 / (3.0 * _DELTA**2)
_LIN_OFFSET = 4.0 / 29.0

# BT.601 as written in the DCGAN report (float scale).
_YUV_FROM_RGB = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ],
    dtype=np.float64,
)
_RGB_FROM_YUV = np.array(
    [
        [1.0, 0.0, 1.4075],
        [1.0, -0.3455, -0.7169],
        [1.0, 1.7790, 0.0],
    ],
    dtype=np.float64,
)


def _pow(x: tf.Tensor, p: float) -> tf.Tensor:
    """``x ** p`` for POSITIVE ``x`` as ``exp(p log x)``: about 3x faster than
    ``tf.pow`` on CPU (measured), and callers clamp ``x`` away from 0."""
    return tf.exp(p * tf.math.log(x))


def _matmul3(x: tf.Tensor, matrix: np.ndarray) -> tf.Tensor:
    """Applies a 3x3 colour matrix to the last axis: ``out[..., i] = sum_j M[i, j] x[..., j]``."""
    m = tf.constant(matrix.T, dtype=tf.float32)
    return tf.reshape(tf.matmul(tf.reshape(x, [-1, 3]), m), tf.shape(x))


def to_float_rgb(rgb) -> tf.Tensor:
    """Converts an sRGB image to float32 in ``[0, 1]``.

    Args:
        rgb: uint8 ``[0, 255]``, uint16 ``[0, 65535]`` or float ``[0, 1]`` tensor/array,
            shape ``[..., 3]``.

    Returns:
        float32 tensor, same shape. Floats are passed through unclipped.
    """
    rgb = tf.convert_to_tensor(rgb)
    if rgb.dtype == tf.uint8:
        return tf.cast(rgb, tf.float32) / 255.0
    if rgb.dtype == tf.uint16:
        return tf.cast(rgb, tf.float32) / 65535.0
    if not rgb.dtype.is_floating:
        raise TypeError(f"rgb must be uint8, uint16 or float, got {rgb.dtype.name}")
    return tf.cast(rgb, tf.float32)


def srgb_to_linear(c: tf.Tensor) -> tf.Tensor:
    """Inverse sRGB transfer curve (IEC 61966-2-1), float32 in ``[0, 1]``."""
    c = tf.cast(c, tf.float32)
    # Clamped arguments keep the untaken branch finite (pow of negatives is NaN).
    high = _pow((tf.maximum(c, 0.04045) + 0.055) / 1.055, 2.4)
    return tf.where(c > 0.04045, high, c / 12.92)


def linear_to_srgb(c: tf.Tensor) -> tf.Tensor:
    """sRGB transfer curve (IEC 61966-2-1), float32; input clipped to ``[0, 1]``."""
    c = tf.clip_by_value(tf.cast(c, tf.float32), 0.0, 1.0)
    # d/dc c^(1/2.4) is infinite at 0: evaluate the power only above the knee.
    high = 1.055 * _pow(tf.maximum(c, 0.0031308), 1.0 / 2.4) - 0.055
    return tf.where(c > 0.0031308, high, 12.92 * c)


def rgb_to_xyz(rgb) -> tf.Tensor:
    """sRGB ``[0, 1]`` (or uint8) -> CIE XYZ (D65, Y of white = 1)."""
    return _matmul3(srgb_to_linear(to_float_rgb(rgb)), _XYZ_FROM_RGB)


def xyz_to_rgb(xyz: tf.Tensor) -> tf.Tensor:
    """CIE XYZ -> sRGB float32 in ``[0, 1]`` (out-of-gamut colours clipped)."""
    return linear_to_srgb(_matmul3(tf.cast(xyz, tf.float32), _RGB_FROM_XYZ))


def _lab_f(t: tf.Tensor) -> tf.Tensor:
    cube_root = _pow(tf.maximum(t, _DELTA_CUBE), 1.0 / 3.0)
    return tf.where(t > _DELTA_CUBE, cube_root, t * _LIN_SLOPE + _LIN_OFFSET)


def _lab_f_inv(f: tf.Tensor) -> tf.Tensor:
    return tf.where(f > _DELTA, f * f * f, (f - _LIN_OFFSET) / _LIN_SLOPE)


def xyz_to_lab(xyz: tf.Tensor) -> tf.Tensor:
    """CIE XYZ -> CIE L*a*b* (D65)."""
    xyz = tf.cast(xyz, tf.float32) / tf.constant(D65_WHITE, tf.float32)
    f = _lab_f(xyz)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    lightness = 116.0 * fy - 16.0
    a = 500.0 * (fx - fy)
    b = 200.0 * (fy - fz)
    return tf.stack([lightness, a, b], axis=-1)


def lab_to_xyz(lab: tf.Tensor) -> tf.Tensor:
    """CIE L*a*b* (D65) -> CIE XYZ.

    For impossible colours (``b`` so large that ``f_z < 0``) ``f_z`` is clipped to 0,
    exactly as scikit-image does, so out-of-gamut generator outputs map to the same
    RGB as the reference implementation.
    """
    lab = tf.cast(lab, tf.float32)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = fy + lab[..., 1] / 500.0
    fz = tf.maximum(fy - lab[..., 2] / 200.0, 0.0)
    xyz = _lab_f_inv(tf.stack([fx, fy, fz], axis=-1))
    return xyz * tf.constant(D65_WHITE, tf.float32)


def rgb_to_lab(rgb) -> tf.Tensor:
    """sRGB -> CIE L*a*b* (D65).

    Args:
        rgb: ``[..., 3]`` uint8 (0–255) or float sRGB in ``[0, 1]``.

    Returns:
        float32 ``[..., 3]``: L in ``[0, 100]``, a/b in about ``[-110, 110]``.
    """
    with tf.name_scope("rgb_to_lab"):
        return xyz_to_lab(rgb_to_xyz(rgb))


def lab_to_rgb(lab) -> tf.Tensor:
    """CIE L*a*b* (D65) -> sRGB float32 in ``[0, 1]``; out-of-gamut values are clipped.

    Args:
        lab: ``[..., 3]`` float, L in ``[0, 100]``.
    """
    with tf.name_scope("lab_to_rgb"):
        return xyz_to_rgb(lab_to_xyz(lab))


def rgb_to_yuv(rgb) -> tf.Tensor:
    """sRGB -> BT.601 YUV as in the DCGAN report: Y in ``[0, 1]``, U/V in ``[-0.5, 0.5]``.

    The paper works on the gamma-encoded values (no linearisation), as BT.601 does.
    """
    return _matmul3(to_float_rgb(rgb), _YUV_FROM_RGB)


def yuv_to_rgb(yuv) -> tf.Tensor:
    """BT.601 YUV (float scale) -> sRGB float32, clipped to ``[0, 1]``; the DCGAN report's
    rounded coefficients."""
    rgb = _matmul3(tf.cast(yuv, tf.float32), _RGB_FROM_YUV)
    return tf.clip_by_value(rgb, 0.0, 1.0)


def normalize_l(lightness) -> tf.Tensor:
    """L in ``[0, 100]`` -> ``[-1, 1]``."""
    return tf.cast(lightness, tf.float32) / L_SCALE - 1.0


def denormalize_l(x) -> tf.Tensor:
    """``[-1, 1]`` -> L in ``[0, 100]``."""
    return (tf.cast(x, tf.float32) + 1.0) * L_SCALE


def normalize_ab(ab) -> tf.Tensor:
    """a/b in Lab units -> network range (``ab / 110``)."""
    return tf.cast(ab, tf.float32) / AB_SCALE


def denormalize_ab(x) -> tf.Tensor:
    """Network range -> a/b in Lab units (``x * 110``)."""
    return tf.cast(x, tf.float32) * AB_SCALE


def lab_to_model(lab) -> tuple[tf.Tensor, tf.Tensor]:
    """Splits Lab ``[..., 3]`` into the network's ``(L_norm [..., 1], ab_norm [..., 2])``."""
    lab = tf.cast(lab, tf.float32)
    return normalize_l(lab[..., :1]), normalize_ab(lab[..., 1:])


def model_to_lab(l_norm, ab_norm) -> tf.Tensor:
    """Inverse of :func:`lab_to_model`: ``[-1, 1]`` L and ab -> Lab ``[..., 3]``."""
    return tf.concat([denormalize_l(l_norm), denormalize_ab(ab_norm)], axis=-1)


def rgb_to_model(rgb, colour_space: str = "lab") -> tuple[tf.Tensor, tf.Tensor]:
    """sRGB (uint8 or float) -> ``(grey, chroma)`` in the network's ``[-1, 1]`` range.

    Args:
        rgb: ``[..., 3]`` image(s).
        colour_space: ``"lab"`` (grey = L/50-1, chroma = ab/110) or ``"yuv"``
            (grey = 2Y-1, chroma = 2·UV, the DCGAN report).
    """
    if colour_space == "lab":
        return lab_to_model(rgb_to_lab(rgb))
    if colour_space == "yuv":
        yuv = rgb_to_yuv(rgb)
        return yuv[..., :1] * 2.0 - 1.0, yuv[..., 1:] * 2.0
    raise ValueError(f"unknown colour space {colour_space!r}; expected 'lab' or 'yuv'")


def model_to_rgb(grey, chroma, colour_space: str = "lab") -> tf.Tensor:
    """Inverse of :func:`rgb_to_model`: network-range grey and chroma -> sRGB ``[0, 1]``."""
    if colour_space == "lab":
        return lab_to_rgb(model_to_lab(grey, chroma))
    if colour_space == "yuv":
        y = (tf.cast(grey, tf.float32) + 1.0) / 2.0
        uv = tf.cast(chroma, tf.float32) / 2.0
        return yuv_to_rgb(tf.concat([y, uv], axis=-1))
    raise ValueError(f"unknown colour space {colour_space!r}; expected 'lab' or 'yuv'")


def apply_saturation(chroma, gain) -> tf.Tensor:
    """The "vividness" control: multiplies chroma (ab or UV) by ``gain``.

    ``gain = 1`` leaves the prediction unchanged, ``0`` gives grey, ``> 1`` more vivid
    colours; colours pushed outside sRGB are clipped when converted back to RGB.
    """
    return tf.cast(chroma, tf.float32) * tf.cast(gain, tf.float32)
