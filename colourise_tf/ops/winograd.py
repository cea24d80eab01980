"""Winograd (Toom-Cook) convolution for stride-1 float32 convs in training.

A stride-1 ``r x r`` convolution computed tile by tile with the minimal filtering
algorithm F(m x m, r x r) of Lavin & Gray ("Fast Algorithms for Convolutional Neural
Networks", CVPR 2016)::

    Y_tile = A^T [ (G g G^T) (.) (B^T d_tile B) ] A

Each ``m x m`` output tile needs ``(m + r - 1)^2`` products per channel pair instead
of ``m^2 r^2``: for the PatchGAN's 4x4 stride-1 256->512 layer with ``m = 3`` that is
36 against 144, a quarter of the multiply-adds. The products over channels are
``(m + r - 1)^2`` independent GEMMs (one ``tf.matmul`` on a stacked batch), and
the transforms are small Kronecker-product matmuls, gathers and transposes, so
TensorFlow's autodiff gives the input and kernel gradients as the same kind of
GEMMs: the whole forward and backward pass of that layer is 2.2-2.5x faster than
oneDNN's direct float32 kernels with one thread (``benchmarks/layer_kernels.py``).
On CPUs only: GPUs and TPUs have their own fast convolutions (cuDNN's include
Winograd), so the path is never taken when one is visible.

Only float32: the transforms amplify rounding, and with bfloat16 GEMM operands the
error grows from ~0.3% (direct) to ~2% (RMS, relative), so bfloat16 keeps the direct
kernels. In float32 the error stays within a few 1e-6 of the output's scale.

The matrices come from the Toom-Cook construction with interpolation points
``0, 1, -1, 1/2, -2`` and infinity (6 points; ``m + r - 1 = 6`` for the kernel
sizes used here), computed in float64 by :func:`toom_cook`.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from colourise_tf.ops.gate import cpu_kernels_enabled

# Interpolation points of the 6-point transforms (plus the point at infinity).
_POINTS = (0.0, 1.0, -1.0, 0.5, -2.0)
# Output tile size per kernel size: m + r - 1 = 6 for each.
TILE = {3: 4, 4: 3, 5: 2}
# Rule thresholds of winograd_wanted (module-level so tests can force the path).
MIN_CHANNELS = 128
DTYPES = ("float32",)


@functools.cache
def toom_cook(m: int, r: int, points: tuple[float, ...] = _POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(AT, G, BT)`` of the 1-D algorithm F(m, r) for correlation, in float64.

    With ``n = m + r - 1`` and ``n - 1`` finite points plus infinity,
    ``y = AT @ ((G @ g) * (BT @ d))`` equals ``y[i] = sum_k d[i + k] g[k]`` for an
    input ``d`` of length ``n`` and a filter ``g`` of length ``r``.

    The linear convolution of a length-``m`` and a length-``r`` sequence is evaluated
    at the points (Vandermonde matrices ``A`` and ``G``) and interpolated back
    (the inverse ``V^-1`` of the ``n x n`` Vandermonde matrix); correlation is its
    transpose, so ``AT = A^T`` and ``BT = V^-T``.
    """
    n = m + r - 1
    if len(points) < n - 1:
        raise ValueError(f"F({m}, {r}) needs {n - 1} finite points, got {len(points)}")
    pts = np.asarray(points[: n - 1], dtype=np.float64)
    a = np.zeros((n, m))
    g = np.zeros((n, r))
    v = np.zeros((n, n))
    a[:-1] = pts[:, None] ** np.arange(m)
    g[:-1] = pts[:, None] ** np.arange(r)
    v[:-1] = pts[:, None] ** np.arange(n)
    a[-1, -1] = g[-1, -1] = v[-1, -1] = 1.0  # the point at infinity: leading coefficients
    return a.T, g, np.linalg.inv(v).T


def winograd_wanted(kernel_shape, strides, out_hw, dtype, training: bool) -> bool:
    """Whether :func:`colourise_tf.ops.conv2d` uses :func:`winograd_conv2d`.

    Training only (inference and exported graphs keep the plain conv op), on a host
    where the CPU-kernel gate allows (:func:`colourise_tf.ops.gate.cpu_kernels_enabled`),
    float32 (:data:`DTYPES`), stride 1,
    square ``3x3``/``4x4``/``5x5`` kernels, at least ``MIN_CHANNELS`` input and
    output channels (the per-tile GEMMs must be worth a kernel call) and at least two
    output tiles per side.

    The thresholds come from per-layer measurements: ``docs/cpu_kernels.md``.
    """
    if not cpu_kernels_enabled(training) or getattr(dtype, "name", dtype) not in DTYPES:
        return False
    kh, kw, cin, cout = (int(d) for d in kernel_shape)
    if kh != kw or kh not in TILE or tuple(strides) != (1, 1):
        return False
    if cin < MIN_CHANNELS or cout < MIN_CHANNELS:
        return False
    return all(d is not None and d >= 2 * TILE[kh] for d in out_hw)


def winograd_conv2d(x: tf.Tensor, kernel: tf.Tensor, pads=((0, 0), (0, 0))) -> tf.Tensor:
    """Stride-1 convolution of ``x`` (NHWC) with ``kernel`` (HWIO) by F(m x m, r x r).

    Args:
        x: ``[N, H, W, C]``; ``H``, ``W`` and ``C`` static.
        kernel: ``[r, r, C, O]`` with ``r`` a key of :data:`TILE`.
        pads: zeros added before and after each spatial axis,
            ``((top, bottom), (left, right))``; then the convolution is "VALID".

    Returns:
        ``[N, H + top + bottom - r + 1, W + left + right - r + 1, O]``, equal to
        ``tf.nn.conv2d`` on the padded input up to float rounding, in ``x``'s dtype
        (computed in float32 whatever the input dtype). Differentiable
        in both arguments by TensorFlow's autodiff (the gradients are GEMMs too).
    """
    r = int(kernel.shape[0])
    m = TILE[r]
    n = m + r - 1
    out_dtype = x.dtype
    dt = tf.float32
    x = tf.cast(x, dt)
    _, h, w, c = x.shape
    o = int(kernel.shape[-1])
    (top, bottom), (left, right) = pads
    ho, wo = int(h) + top + bottom - r + 1, int(w) + left + right - r + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"winograd_conv2d: input {tuple(x.shape)} with pads {pads} is smaller than the {r}x{r} kernel")
    th, tw = -(-ho // m), -(-wo // m)
    # Spatial axes outermost: [H, W, N, C]. Pad to whole tiles in the same copy.
    xt = tf.transpose(x, [1, 2, 0, 3])
    extra_h = m * th + r - 1 - (int(h) + top + bottom)
    extra_w = m * tw + r - 1 - (int(w) + left + right)
    xt = tf.pad(xt, [[top, bottom + extra_h], [left, right + extra_w], [0, 0], [0, 0]])
    # Overlapping n x n input tiles with stride m: two gathers (strided slices are
    # ~10x slower on CPU), then [n_h, n_w, tile_h, tile_w, N, C].
    idx_h = np.arange(n)[:, None] + m * np.arange(th)[None, :]
    idx_w = np.arange(n)[:, None] + m * np.arange(tw)[None, :]
    tiles = tf.gather(tf.gather(xt, idx_h), idx_w, axis=2)  # [n_h, th, n_w, tw, N, C]
    tiles = tf.transpose(tiles, [0, 2, 1, 3, 4, 5])
    at, g, bt = toom_cook(m, r)
    # Transforms as one matmul each with the Kronecker products (row index first).
    u = tf.matmul(tf.constant(np.kron(bt, bt), dt), tf.reshape(tiles, [n * n, -1]))
    u = tf.reshape(u, [n * n, -1, c])  # [n*n, th*tw*N, C]
    v = tf.matmul(tf.constant(np.kron(g, g), dt), tf.reshape(tf.cast(kernel, dt), [r * r, -1]))
    v = tf.reshape(v, [n * n, c, o])
    prod = tf.matmul(u, v)  # n*n GEMMs: [th*tw*N, C] x [C, O]
    y = tf.matmul(tf.constant(np.kron(at, at), dt), tf.reshape(prod, [n * n, -1]))  # [m*m, ...]
    y = tf.reshape(y, [m, m, th, tw, -1, o])  # [a, b, tile_h, tile_w, N, O]
    y = tf.transpose(y, [4, 2, 0, 3, 1, 5])  # [N, tile_h, a, tile_w, b, O]
    y = tf.reshape(y, [-1, m * th, m * tw, o])
    if m * th != ho or m * tw != wo:
        # tf.slice, not y[:, :ho, :wo]: the gradient of a Slice is a Pad, that of a
        # StridedSlice a StridedSliceGrad, ~25 ms for the PatchGAN's 33->31 crop.
        y = tf.slice(y, [0, 0, 0, 0], [-1, ho, wo, -1])
    return tf.cast(y, out_dtype)
