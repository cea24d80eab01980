"""Convolutions over few positions as plain GEMMs (the deep U-Net and PatchGAN layers).

Where a layer sees few spatial positions and many channels (the U-Net's 2x2-8x8
layers at batch 4), the work is one skinny GEMM against a large kernel, and how the
kernel is read decides the time: TensorFlow's ``MatMul`` copies a large transposed
operand first, and oneDNN's kernels for these layers were as slow (see
``docs/cpu_kernels.md``). Here every product reads the kernel as stored::

    conv:            y = im2col(x) @ K          K = kernel as [k*k*C_in, C_out]
    transposed conv: y = col2im((K' @ x^T)^T)   K' = kernel as [k*k*C_out, C_in]

and the gradients (a ``tf.custom_gradient``) are GEMMs oriented the same way: the
kernel is only ever a row-major first operand or an untransposed second operand.
``im2col`` is ``tf.image.extract_patches``; ``col2im``, its adjoint, sums the
``k*k`` tap planes shifted into ``s*s`` phase images joined by ``depth_to_space``,
so it needs ``k % s == 0`` (all presets: 4x4 kernels with stride 1 or 2, 3x3 with 1).
"""

from __future__ import annotations

import functools

import tensorflow as tf

from colourise_tf.cpu import cpu_flags
from colourise_tf.ops.gate import cpu_kernels_enabled

# Rule thresholds of gemm_conv_wanted (module-level so tests can force the path).
MAX_ROWS = 1024  # GEMM rows: batch x positions on the layer's small side
MAX_ROWS_AVX512 = 256  # the same on CPUs with AVX-512, whose oneDNN kernels win sooner
MIN_CHANNEL_PRODUCT = 1 << 17  # C_in x C_out
MAX_ROWS_VS_WINOGRAD = 256  # where colourise_tf.ops.winograd also applies, it wins above this
DTYPES = ("float32",)


def gemm_conv_wanted(rows: int, kernel_shape, strides, dtype, training: bool) -> bool:
    """Whether :func:`colourise_tf.ops.conv2d` uses this module's convs.

    Training where the CPU-kernel gate allows (by default on a CPU-only host), float32,
    at most ``MAX_ROWS`` positions on the layer's small side (``MAX_ROWS_AVX512`` on CPUs with AVX-512, see
    :func:`_avx512`; the output of a conv, the input of a transposed conv; batch
    included), ``C_in x C_out >=
    MIN_CHANNEL_PRODUCT``, and a square kernel whose size is a multiple of the square
    stride. (:func:`colourise_tf.ops.conv2d` also leaves convs with more
    than ``MAX_ROWS_VS_WINOGRAD`` rows to Winograd where that applies.)

    The thresholds come from per-layer measurements: ``docs/cpu_kernels.md``.
    """
    if not cpu_kernels_enabled(training) or getattr(dtype, "name", dtype) not in DTYPES:
        return False
    kh, kw, ci, co = (int(d) for d in kernel_shape)
    sh, sw = (int(v) for v in strides)
    if kh != kw or sh != sw or kh % sh or ci * co < MIN_CHANNEL_PRODUCT:
        return False
    return rows <= (MAX_ROWS_AVX512 if _avx512() else MAX_ROWS)


@functools.cache
def _avx512() -> bool:
    """Whether the CPU has AVX-512, whose oneDNN float32 kernels beat these GEMMs from
    fewer rows on than AVX2's do (:data:`MAX_ROWS_AVX512`)."""
    return "avx512f" in cpu_flags()


def conv_pads(size: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """Zero rows TF adds before/after an axis of ``size`` for a conv (``"SAME"``/``"VALID"``)."""
    if padding == "VALID":
        return 0, 0
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def im2col(x: tf.Tensor, k: int, s: int, pads_h, pads_w) -> tf.Tensor:
    """``[N, H, W, C] -> [N, OH, OW, k*k*C]``: each output position's zero-padded window."""
    if any(pads_h) or any(pads_w):
        x = tf.pad(x, [[0, 0], list(pads_h), list(pads_w), [0, 0]])
    return tf.image.extract_patches(x, [1, k, k, 1], [1, s, s, 1], [1, 1, 1, 1], "VALID")


def col2im(z: tf.Tensor, k: int, s: int, out_h: int, out_w: int, pad_h: int, pad_w: int) -> tf.Tensor:
    """The adjoint of :func:`im2col`: ``[N, H, W, k, k, C] -> [N, out_h, out_w, C]``.

    Tap ``(a, b)`` of window ``(p, q)`` lands at ``(p*s + a - pad_h, q*s + b - pad_w)``.
    With ``a = s*i + r`` that is row ``p + i`` of phase ``r``: each of the ``s*s``
    phase images is a sum of ``(k/s)^2`` shifted tap planes, and ``depth_to_space``
    interleaves them. Rows outside ``[0, out_h)`` (the padding) are cropped.
    """
    ka = k // s
    phases = []
    for rh in range(s):
        for rw in range(s):
            acc = None
            for ih in range(ka):
                for iw in range(ka):
                    plane = tf.pad(
                        z[:, :, :, s * ih + rh, s * iw + rw, :], [[0, 0], [ih, ka - 1 - ih], [iw, ka - 1 - iw], [0, 0]]
                    )
                    acc = plane if acc is None else acc + plane
            phases.append(acc)
    y = phases[0] if s == 1 else tf.nn.depth_to_space(tf.concat(phases, axis=-1), s)
    full_h, full_w = int(y.shape[1]), int(y.shape[2])
    if pad_h + out_h > full_h or pad_w + out_w > full_w:  # VALID with rows no window reaches
        y = tf.pad(y, [[0, 0], [0, max(pad_h + out_h - full_h, 0)], [0, max(pad_w + out_w - full_w, 0)], [0, 0]])
    if (pad_h, pad_w, out_h, out_w) != (0, 0, full_h, full_w):
        y = tf.slice(y, [0, pad_h, pad_w, 0], [-1, out_h, out_w, -1])
    return y


def _rows_t(kernel2d: tf.Tensor, x2d: tf.Tensor) -> tf.Tensor:
    """``x2d @ kernel2d^T`` computed as ``(kernel2d @ x2d^T)^T``: the large kernel stays
    the row-major first operand; only the small ``[rows, ...]`` operands are transposed."""
    return tf.transpose(tf.matmul(kernel2d, x2d, transpose_b=True))


def gemm_conv2d(x: tf.Tensor, kernel: tf.Tensor, strides, pads) -> tf.Tensor:
    """``x`` zero-padded by ``pads = ((top, bottom), (left, right))``, then convolved
    ("VALID") with ``kernel`` (``[k, k, C_in, C_out]``) at ``strides``, as GEMMs,
    gradients included. Static shapes. ``conv_pads`` gives TF's "SAME" pads."""
    k, s = int(kernel.shape[0]), int(strides[0])
    n, h, w, cin = (int(d) for d in x.shape)
    cout = int(kernel.shape[3])
    ph, pw = tuple(pads[0]), tuple(pads[1])
    oh, ow = (h + sum(ph) - k) // s + 1, (w + sum(pw) - k) // s + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"gemm_conv2d: input {h}x{w} padded by {pads} is smaller than the {k}x{k} kernel")

    @tf.custom_gradient
    def conv(x, kernel):
        k2d = tf.reshape(kernel, [k * k * cin, cout])
        cols = tf.reshape(im2col(x, k, s, ph, pw), [n * oh * ow, k * k * cin])
        y = tf.reshape(tf.matmul(cols, k2d), [n, oh, ow, cout])

        def grad(dy):
            dy2d = tf.reshape(dy, [n * oh * ow, cout])
            dcols = tf.reshape(_rows_t(k2d, dy2d), [n, oh, ow, k, k, cin])
            dx = col2im(dcols, k, s, h, w, ph[0], pw[0])
            dk = tf.matmul(cols, dy2d, transpose_a=True)
            return dx, tf.reshape(dk, kernel.shape)

        return y, grad

    return conv(x, kernel)


def gemm_conv2d_transpose(x: tf.Tensor, kernel: tf.Tensor, output_shape, strides, padding: str) -> tf.Tensor:
    """``tf.nn.conv2d_transpose`` (static shapes; ``kernel`` is ``[k, k, C_out, C_in]``) as GEMMs."""
    k, s = int(kernel.shape[0]), int(strides[0])
    n, h, w, cin = (int(d) for d in x.shape)
    _, oh, ow, cout = (int(d) for d in output_shape)
    ph, pw = conv_pads(oh, k, s, padding), conv_pads(ow, k, s, padding)

    @tf.custom_gradient
    def conv_t(x, kernel):
        k2d = tf.reshape(kernel, [k * k * cout, cin])
        x2d = tf.reshape(x, [n * h * w, cin])
        z = tf.reshape(_rows_t(k2d, x2d), [n, h, w, k, k, cout])
        y = col2im(z, k, s, oh, ow, ph[0], pw[0])

        def grad(dy):
            dz = tf.reshape(im2col(dy, k, s, ph, pw), [n * h * w, k * k * cout])
            dx = tf.reshape(tf.matmul(dz, k2d), x.shape)
            dk = tf.matmul(dz, x2d, transpose_a=True)
            return dx, tf.reshape(dk, kernel.shape)

        return y, grad

    return conv_t(x, kernel)
