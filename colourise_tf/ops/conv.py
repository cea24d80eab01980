"""``conv2d`` / ``conv2d_transpose``: TensorFlow's ops, or a CPU-only kernel in training.

Both take NHWC inputs and HWIO kernels (``[k, k, C_in, C_out]``; for the transposed
conv, Keras's ``[k, k, C_out, C_in]``) in the compute dtype. With the gate off
(:func:`colourise_tf.ops.gate.cpu_kernels_enabled`: always outside training, and on a
GPU or TPU by default) they are exactly ``tf.nn.conv2d`` / ``tf.nn.conv2d_transpose``.
With the gate on, and only for static shapes where a kernel's rule says so, they run:

* few output positions: the conv or transposed conv as GEMMs (:mod:`.gemm_conv`);
* float32 stride-1 convs with many channels: Winograd (:mod:`.winograd`);
* a conv or transposed conv to a few channels: in two steps (:mod:`.thin_conv`);
* otherwise TensorFlow's op, whose kernel gradient may be GEMMs (:mod:`.filter_grad`).

Those ops are created in the name scope :data:`CPU_KERNEL_SCOPE`, so a graph check can
see them.
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops as kops

from colourise_tf.ops import gemm_conv, thin_conv, winograd
from colourise_tf.ops.filter_grad import conv2d_custom_grad, conv2d_transpose_custom_grad, filter_grad_fn
from colourise_tf.ops.gate import CPU_KERNEL_SCOPE, cpu_kernels_enabled


def conv2d(x, kernel, strides, padding: str, *, explicit_padding: int | None = None, training: bool = False):
    """A 2-D convolution (no bias, no activation).

    Args:
        x: ``[N, H, W, C_in]`` input.
        kernel: ``[kh, kw, C_in, C_out]`` kernel, same dtype as ``x``.
        strides: ``(sh, sw)``.
        padding: ``"same"`` or ``"valid"`` (any case).
        explicit_padding: zero pixels added on each side before a ``"valid"`` conv
            (the PatchGAN's ``padding=1``); see :func:`_explicit_pad`.
        training: whether the call is part of a training step; only then may the gate
            let a CPU-only kernel run.
    """
    strides = tuple(int(s) for s in strides)
    padding = padding.upper()
    if cpu_kernels_enabled(training):
        with tf.name_scope(CPU_KERNEL_SCOPE):
            return _conv2d(x, kernel, strides, padding, explicit_padding, fast=True)
    return _conv2d(x, kernel, strides, padding, explicit_padding, fast=False)


def conv2d_transpose(x, kernel, strides, padding: str, *, training: bool = False):
    """A 2-D transposed convolution (no bias, no activation), Keras's output size:
    ``H * s`` for ``"same"``, ``(H - 1) * s + k`` for ``"valid"``.

    ``kernel`` is ``[kh, kw, C_out, C_in]``. Other arguments as :func:`conv2d`.
    """
    strides = tuple(int(s) for s in strides)
    if not all(d is not None for d in x.shape):
        return kops.conv_transpose(x, kernel, strides=list(strides), padding=padding.lower())
    if cpu_kernels_enabled(training):
        with tf.name_scope(CPU_KERNEL_SCOPE):
            return _conv2d_transpose(x, kernel, strides, padding.upper(), fast=True)
    return _conv2d_transpose(x, kernel, strides, padding.upper(), fast=False)


def _conv2d_transpose(x, kernel, strides, padding: str, fast: bool):
    b, h, w, _ = (int(d) for d in x.shape)
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    if padding == "SAME":
        oh, ow = h * strides[0], w * strides[1]
    else:
        oh, ow = (h - 1) * strides[0] + kh, (w - 1) * strides[1] + kw
    out_shape = [b, oh, ow, int(kernel.shape[2])]
    if gemm_conv.gemm_conv_wanted(b * h * w, kernel.shape, strides, x.dtype, fast):
        return gemm_conv.gemm_conv2d_transpose(x, kernel, out_shape, strides, padding)
    if thin_conv.thin_output_transpose_wanted(kernel.shape, x.dtype, fast):
        return thin_conv.thin_output_conv2d_transpose(x, kernel, out_shape, strides, padding)
    filter_grad = filter_grad_fn(b * h * w, kernel.shape, strides, x.dtype) if fast else None
    if filter_grad is not None:
        return conv2d_transpose_custom_grad(x, kernel, out_shape, strides, padding, filter_grad)
    return tf.nn.conv2d_transpose(x, kernel, out_shape, [1, *strides, 1], padding)


def _conv2d(x, kernel, strides, padding: str, explicit_padding: int | None, fast: bool):
    static = all(d is not None for d in x.shape)
    if fast and static:
        pads = _gemm_pads(x, kernel, strides, padding, explicit_padding)
        if pads is not None:
            return gemm_conv.gemm_conv2d(x, kernel, strides, pads)
    if fast and all(d is not None for d in x.shape[1:]):
        pads = _winograd_pads(x, kernel, strides, padding, explicit_padding)
        if pads is not None:
            return winograd.winograd_conv2d(x, kernel, pads)
    if explicit_padding is not None:
        x, padding = _explicit_pad(x, kernel, strides, explicit_padding)
    if thin_conv.thin_output_wanted(kernel.shape, strides, x.dtype, fast):
        return thin_conv.thin_output_conv2d(x, kernel, padding)
    if fast and static:
        b, h, w, _ = (int(d) for d in x.shape)
        kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
        if padding == "SAME":
            oh, ow = -(-h // strides[0]), -(-w // strides[1])
        else:
            oh, ow = (h - kh) // strides[0] + 1, (w - kw) // strides[1] + 1
        filter_grad = filter_grad_fn(b * oh * ow, kernel.shape, strides, x.dtype)
        if filter_grad is not None:
            return conv2d_custom_grad(x, kernel, strides, padding, filter_grad)
    return tf.nn.conv2d(x, kernel, [1, *strides, 1], padding)


def _gemm_pads(x, kernel, strides, padding: str, explicit_padding: int | None):
    """The ``pads`` for :func:`gemm_conv.gemm_conv2d` if it is wanted, else ``None``.

    ``x`` has a static shape (checked by the caller).
    """
    n, h, w = (int(d) for d in x.shape[:3])
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    sh, sw = strides
    if explicit_padding is not None:
        pads = ((explicit_padding,) * 2,) * 2
    else:
        pads = (gemm_conv.conv_pads(h, kh, sh, padding), gemm_conv.conv_pads(w, kw, sw, padding))
    rows = n * ((h + sum(pads[0]) - kh) // sh + 1) * ((w + sum(pads[1]) - kw) // sw + 1)
    if not gemm_conv.gemm_conv_wanted(rows, kernel.shape, strides, x.dtype, training=True):
        return None
    if (
        rows > gemm_conv.MAX_ROWS_VS_WINOGRAD
        and _winograd_pads(x, kernel, strides, padding, explicit_padding) is not None
    ):
        return None
    return pads


def _winograd_pads(x, kernel, strides, padding: str, explicit_padding: int | None):
    """The ``pads`` for :func:`winograd.winograd_conv2d` if it is wanted, else ``None``.

    ``x`` has static height, width and channels (checked by the caller).
    """
    if tuple(strides) != (1, 1):
        return None
    h, w = int(x.shape[1]), int(x.shape[2])
    k = int(kernel.shape[0])
    if explicit_padding is not None:
        pads = ((explicit_padding,) * 2,) * 2
    elif padding == "SAME":
        pads = (((k - 1) // 2, k // 2),) * 2  # TF's "SAME" for stride 1: the extra pixel after
    else:
        pads = ((0, 0), (0, 0))
    out_hw = (h + sum(pads[0]) - k + 1, w + sum(pads[1]) - k + 1)
    if winograd.winograd_wanted(tuple(int(d) for d in kernel.shape), strides, out_hw, x.dtype, training=True):
        return pads
    return None


def _same_equals_symmetric_pad(n: int | None, k: int, s: int, pad: int) -> bool:
    """Whether TF's "SAME" padding of an axis of size ``n`` is exactly ``pad`` per side."""
    if n is None:
        return False
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total == 2 * pad and (n + 2 * pad - k) // s + 1 == out


def _explicit_pad(x, kernel, strides, pad: int):
    """``(input, padding)`` for a conv on ``x`` zero-padded by ``pad`` per side.

    When "SAME" padding pads exactly ``pad`` per side (e.g. a 4x4 stride-2 conv with
    ``pad = 1`` on an even size, as in every stride-2 PatchGAN layer) the padding is
    left to the convolution, saving the padded copy of the input and the slice of its
    gradient; otherwise the input is padded first, as ``ZeroPadding2D`` would.
    (TensorFlow's "EXPLICIT" padding would do it in general, but the oneDNN kernels
    do not take it: measured 1.2x slower in float32 and 40x in bfloat16.)
    """
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    sh, sw = strides
    if _same_equals_symmetric_pad(x.shape[1], kh, sh, pad) and _same_equals_symmetric_pad(x.shape[2], kw, sw, pad):
        return x, "SAME"
    return tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]]), "VALID"
