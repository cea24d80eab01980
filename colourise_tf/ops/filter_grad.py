"""Kernel gradients of convolutions as GEMMs, for the layers where oneDNN's
filter-gradient kernels are slow on CPUs.

Two rewrites, chosen per layer by :func:`filter_grad_fn`: one GEMM over patches
(:func:`_patches_matmul`) for layers with few spatial positions and large kernels,
and ``k/s`` GEMMs over shifted views of the input (:func:`_shifted_matmul`) for
bfloat16 layers with wide kernels. Values and gradients equal TensorFlow's own up to
summation order. Measurements: ``docs/cpu_kernels.md``.
"""

from __future__ import annotations

import math

import tensorflow as tf


def patch_filter_gradient_wanted(rows: int, kernel_elements: int, dtype) -> bool:
    """Whether :func:`colourise_tf.ops.conv2d` computes a kernel gradient as patches^T @ grad.

    oneDNN's filter-gradient kernels are slow for layers with few spatial positions
    and many channels (the deep U-Net layers: 14-80 GFLOP/s against ~350 for the
    same work as one GEMM, measured on the 2-core AVX512-BF16 CPU at batch 4;
    ``benchmarks/layer_kernels.py``). ``rows`` is the GEMM's inner size: output
    positions of a conv, input positions of a transposed conv (batch included).
    """
    if kernel_elements < _PATCH_GRAD_MIN_KERNEL:
        return False
    limit = _PATCH_GRAD_MAX_ROWS_HALF if _is_half(dtype) else _PATCH_GRAD_MAX_ROWS
    return rows <= limit


def shifted_filter_gradient_wanted(kernel_shape, strides, dtype) -> bool:
    """Whether :func:`colourise_tf.ops.conv2d` computes a kernel gradient with :func:`_shifted_matmul`.

    In bfloat16 on CPUs without AMX, oneDNN's filter-gradient kernel (``jit_bf16``)
    runs at ~270 GFLOP/s where its forward and input-gradient kernels reach ~430;
    the same sum as ``k/s`` GEMMs over shifted views of the input is 10-25% faster
    once each GEMM's result (``C_out`` x ``(k/s) * s^2 * C_in``) is large enough: the
    PatchGAN's 256->512 (stride 1) and 128->256 layers, the U-Net's 128->256 and
    256->512 layers and its 1024->256, 512->128 and 256->64 transposed convs, whose
    kernel gradients are those of 256->1024, 128->512 and 64->256 convs
    (``benchmarks/layer_kernels.py``; with one intra-op thread, as training uses on
    a 2-core CPU, 64->256 gains 12% and 64->128 nothing, so the latter stays
    native). In float32 the same comparison came out mixed from run to run (faster
    on some layers, slower on others), so float32 keeps oneDNN's kernel. Square
    kernels divisible by a square stride only.
    """
    if getattr(dtype, "name", dtype) not in _SHIFTED_GRAD_DTYPES:
        return False
    kh, kw, cin, cout = (int(d) for d in kernel_shape)
    sh, sw = strides
    if kh != kw or sh != sw or kh % sh:
        return False
    width = (kh // sh) * sh * sh * cin
    return width >= _SHIFTED_GRAD_MIN_WIDTH and width * cout >= _SHIFTED_GRAD_MIN_OUTPUT


def _is_half(dtype) -> bool:
    return getattr(dtype, "name", dtype) in ("bfloat16", "float16")


# Thresholds of the two rules above (module-level so tests can force a path).
_PATCH_GRAD_MIN_KERNEL = 1 << 20
_PATCH_GRAD_MAX_ROWS = 256
_PATCH_GRAD_MAX_ROWS_HALF = 1024
_SHIFTED_GRAD_MIN_WIDTH = 512
_SHIFTED_GRAD_MIN_OUTPUT = 1 << 17
_SHIFTED_GRAD_DTYPES = ("bfloat16",)


def _patches_matmul(src, other, kernel_shape, strides, padding):
    """``sum_p patch(src)[p] (x) other[p]``: a conv's kernel gradient as one GEMM."""
    kh, kw = kernel_shape[0], kernel_shape[1]
    p = tf.image.extract_patches(src, [1, kh, kw, 1], [1, *strides, 1], [1, 1, 1, 1], padding)
    p = tf.reshape(p, [-1, kh * kw * int(src.shape[-1])])
    g = tf.matmul(p, tf.reshape(other, [-1, int(other.shape[-1])]), transpose_a=True)
    return tf.reshape(g, kernel_shape)


def _shifted_matmul(src, other, kernel_shape, strides, padding):
    """The same sum as :func:`_patches_matmul` without building the patches.

    For a ``k x k`` kernel with stride ``s`` (``k % s == 0``) the padded input is
    folded with ``space_to_depth(s)``; tap ``(s*a + p, s*b + q)`` of the kernel then
    reads position ``(y + a, x + b)`` of the folded input at channel block ``(p, q)``.
    With rows (height) outermost, the ``k/s`` width shifts are concatenated along
    channels once, and each of the ``k/s`` height shifts is a contiguous slice:
    ``k/s`` GEMMs of width ``(k/s) * s^2 * C_in``, each contracting over all output
    positions. The result is reassembled into ``[k, k, C_in, C_out]``.
    """
    k, s = int(kernel_shape[0]), int(strides[0])
    n, h, w, cin = (int(d) for d in src.shape)
    _, oh, ow, cout = (int(d) for d in other.shape)
    if padding == "SAME":
        th, tw = max((oh - 1) * s + k - h, 0), max((ow - 1) * s + k - w, 0)
        pads = [[0, 0], [th // 2, th - th // 2], [tw // 2, tw - tw // 2], [0, 0]]
    else:
        pads = [[0, 0], [0, 0], [0, 0], [0, 0]]
    pads[1][1] += -(h + pads[1][0] + pads[1][1]) % s  # fold needs multiples of s
    pads[2][1] += -(w + pads[2][0] + pads[2][1]) % s
    if any(v for pair in pads for v in pair):
        src = tf.pad(src, pads)
    if s > 1:
        src = tf.nn.space_to_depth(src, s)
    ka = k // s
    rows_first = tf.transpose(src, [1, 0, 2, 3])  # [H', N, W', s*s*C]
    wide = tf.concat([rows_first[:, :, b : b + ow, :] for b in range(ka)], axis=-1)
    grad = tf.reshape(tf.transpose(other, [1, 0, 2, 3]), [oh * n * ow, cout])
    width = ka * s * s * cin
    parts = [
        tf.matmul(grad, tf.reshape(wide[a : a + oh], [oh * n * ow, width]), transpose_a=True) for a in range(ka)
    ]  # each [C_out, (b, p, q, C_in)]
    g = tf.reshape(tf.stack(parts), [ka, cout, ka, s, s, cin])
    return tf.reshape(tf.transpose(g, [0, 3, 2, 4, 5, 1]), [k, k, cin, cout])


def filter_grad_fn(rows: int, kernel_shape, strides, dtype):
    """The kernel-gradient function :func:`colourise_tf.ops.conv2d` uses, or ``None`` for TF's own.

    One GEMM over patches for the few-position layers (up to ``_PATCH_GRAD_MAX_ROWS``
    rows), else the shifted GEMMs where they are wanted, else patches where wanted.
    """
    patches = patch_filter_gradient_wanted(rows, int(math.prod(kernel_shape)), dtype)
    if patches and rows <= _PATCH_GRAD_MAX_ROWS:
        return _patches_matmul
    if shifted_filter_gradient_wanted(kernel_shape, strides, dtype):
        return _shifted_matmul
    return _patches_matmul if patches else None


def conv2d_custom_grad(x, kernel, strides, padding, filter_grad):
    """``tf.nn.conv2d`` whose kernel gradient is ``filter_grad(x, dy, ...)``."""

    @tf.custom_gradient
    def conv(x, kernel):
        y = tf.nn.conv2d(x, kernel, [1, *strides, 1], padding)

        def grad(dy):
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=kernel, out_backprop=dy, strides=[1, *strides, 1], padding=padding
            )
            return dx, filter_grad(x, dy, kernel.shape, strides, padding)

        return y, grad

    return conv(x, kernel)


def conv2d_transpose_custom_grad(x, kernel, output_shape, strides, padding, filter_grad):
    """``tf.nn.conv2d_transpose`` whose kernel gradient is ``filter_grad(dy, x, ...)``.

    The transposed conv is the adjoint of the conv from ``output_shape`` to ``x``'s
    shape with the same kernel, so its input gradient is that conv of the upstream
    gradient and its kernel gradient pairs patches of the upstream gradient with ``x``.
    """

    @tf.custom_gradient
    def conv_t(x, kernel):
        y = tf.nn.conv2d_transpose(x, kernel, output_shape, [1, *strides, 1], padding)

        def grad(dy):
            dx = tf.nn.conv2d(dy, kernel, [1, *strides, 1], padding)
            return dx, filter_grad(dy, x, kernel.shape, strides, padding)

        return y, grad

    return conv_t(x, kernel)
