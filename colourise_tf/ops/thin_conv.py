"""Convolutions to very few channels (the PatchGAN's 512->1 output, the U-Net's 128->2 chroma).

oneDNN's direct kernels are built for many output channels: the PatchGAN's final
4x4 stride-1 512->1 conv runs at ~8 GFLOP/s on this project's CPU in every direction
(forward, input and kernel gradient). The same sum in two steps is a GEMM-shaped
1x1 conv and a tiny one::

    z = conv1x1(x, W')          # W'[c, (a, b, o)] = W[a, b, c, o]: C_in -> k*k*C_out
    y = conv(z, S, padding)     # S[a, b, (a', b', o'), o] = [a = a', b = b', o = o']

``S`` only selects: tap ``(a, b)`` of the output reads channel ``(a, b, o)`` of ``z``
at offset ``(a, b)``, so ``y`` is the original conv (zero padding commutes with the
bias-free 1x1 conv). Autodiff gives the gradients the same shape: the heavy parts are
GEMMs with ``k*k*C_out`` columns. Forward and both gradients are 2.4-6x faster at the
PatchGAN's full and half scale (``benchmarks/layer_kernels.py``).

A transposed conv to few channels (the U-Net's 4x4 stride-2 128->2 chroma layer) is
split the same way, ``z = conv1x1(x, W')`` then ``conv_transpose(z, S)`` with the
original stride and padding: there ``z`` lives at the input resolution, so any stride
works; forward and both gradients 1.5-2.0x (bf16) and 1.25-1.45x (float32) faster
with one thread at batch 4, 128x128 -> 256x256, in two runs.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from colourise_tf.ops.gate import cpu_kernels_enabled

# Rule thresholds of thin_output_wanted (module-level so tests can force the path).
MAX_OUTPUT_CHANNELS = 4
MIN_INPUT_CHANNELS = 64


def thin_output_wanted(kernel_shape, strides, dtype, training: bool) -> bool:
    """Whether :func:`colourise_tf.ops.conv2d` uses :func:`thin_output_conv2d`.

    Training where the CPU-kernel gate allows (by default on a CPU-only host), float32 or
    bfloat16, stride 1, at most
    ``MAX_OUTPUT_CHANNELS`` output and at least ``MIN_INPUT_CHANNELS`` input channels.
    The thresholds come from per-layer measurements: ``docs/cpu_kernels.md``.
    """
    if not cpu_kernels_enabled(training) or getattr(dtype, "name", dtype) not in ("float32", "bfloat16"):
        return False
    kh, kw, cin, cout = (int(d) for d in kernel_shape)
    return tuple(strides) == (1, 1) and cout <= MAX_OUTPUT_CHANNELS and cin >= MIN_INPUT_CHANNELS


def _taps(x: tf.Tensor, kernel: tf.Tensor, cin_first):
    """``(z, select)``: the 1x1 conv of ``x`` to one channel per kernel tap and output
    channel, and the 0/1 kernel ``select[a, b, o, t]`` (``t = (a * kw + b) * C_out + o``)
    that puts them back in place.

    ``cin_first`` permutes ``kernel`` to ``[C_in, kh, kw, C_out]``.
    """
    w = tf.transpose(kernel, cin_first)
    cin, kh, kw, cout = (int(d) for d in w.shape)
    taps = kh * kw * cout
    z = tf.nn.conv2d(x, tf.reshape(w, [1, 1, cin, taps]), 1, "VALID")
    return z, np.eye(taps, dtype=np.float32).reshape(kh, kw, cout, taps)


def thin_output_conv2d(x: tf.Tensor, kernel: tf.Tensor, padding: str = "VALID") -> tf.Tensor:
    """``tf.nn.conv2d(x, kernel, 1, padding)`` as a 1x1 GEMM and a selecting conv.

    Args:
        x: ``[N, H, W, C_in]``.
        kernel: ``[kh, kw, C_in, C_out]``.
        padding: ``"VALID"`` or ``"SAME"`` (TensorFlow's meaning).
    """
    z, select = _taps(x, kernel, [2, 0, 1, 3])
    return tf.nn.conv2d(z, tf.constant(select.transpose(0, 1, 3, 2), x.dtype), 1, padding)


def thin_output_transpose_wanted(kernel_shape, dtype, training: bool) -> bool:
    """Whether :func:`colourise_tf.ops.conv2d_transpose` uses :func:`thin_output_conv2d_transpose`.

    ``kernel_shape`` is the transposed conv's ``[kh, kw, C_out, C_in]``; the same
    conditions as :func:`thin_output_wanted`, for any stride.
    """
    kh, kw, cout, cin = (int(d) for d in kernel_shape)
    return thin_output_wanted([kh, kw, cin, cout], (1, 1), dtype, training)


def thin_output_conv2d_transpose(x: tf.Tensor, kernel: tf.Tensor, output_shape, strides, padding: str) -> tf.Tensor:
    """``tf.nn.conv2d_transpose(x, kernel, output_shape, strides, padding)`` split in two.

    ``z = conv1x1(x, W')`` with ``W'[c, (a, b, o)] = kernel[a, b, o, c]``, then the
    transposed conv of ``z`` with the selection kernel ``S[a, b, o, (a, b, o)] = 1``.
    """
    z, select = _taps(x, kernel, [3, 0, 1, 2])
    return tf.nn.conv2d_transpose(z, tf.constant(select, x.dtype), output_shape, [1, *strides, 1], padding)
