"""Building blocks: conv / transposed-conv blocks, spectral norm, IBN, reflection padding.

Every class here is registered with Keras (package ``colourise_tf``), implements
``get_config`` and round-trips through ``from_config`` and ``.keras`` files.

Normalisation choices (``norm=``)
---------------------------------
* ``"none"``: conv with bias, no normalisation.
* ``"batch"``: bias-free conv + :class:`FusedBatchNormalization` (Keras BN on TF's fused kernel; momentum 0.9 and
  epsilon 1e-5, i.e. PyTorch's defaults, which pix2pix and IBN-Net use).
* ``"instance"``: bias-free conv + :class:`InstanceNormalization`, i.e.
  ``keras.layers.GroupNormalization(groups=-1)`` on the IBN kernel
  (one group per channel = instance norm, affine), the Keras 3 replacement for
  ``tensorflow_addons.layers.InstanceNormalization``.
* ``"ibn"``: bias-free conv + :class:`IBNorm` or plain batch norm, by depth (below).

IBN (Górriz et al. 2019 §III-B, after IBN-Net "IBN-a", Pan et al. 2018)
-------------------------------------------------------------
Inside an :class:`IBNorm` layer with ``C`` channels, channels ``[0, floor(ratio * C))``
(the first half for ``ratio = 0.5``) are instance-normalised (affine
``GroupNormalization(groups=-1)``, per-sample statistics, nothing stored) and the
remaining channels are batch-normalised (``BatchNormalization`` with moving mean and
variance). IBN-Net puts IN only in shallow layers, where appearance (style) varies, and
keeps BN alone in deep layers, which carry content. We measure depth by resolution:
a normalised layer whose output is ``l`` stride-2 levels below the input resolution
(output size ``H / 2**l``) gets :class:`IBNorm` if ``l <= S`` and plain BN otherwise,
with ``S = ModelConfig.ibn_levels`` or, when that is 0, ``S = ceil(l_max / 2)`` for a
network whose deepest feature map is at level ``l_max``. Layers that are never
normalised (the first layer, output heads) stay so. Concretely, with the defaults:

* Górriz et al. 2019 U-Net (7 levels, S = 4): encoder e1 (level 1) no norm; e2, e3, e4 (levels
  2-4: e128, e256, e512) IBN; e5, e6, e7 BN only. Decoder d_j outputs level 7 - j:
  d1 (512 @ level 6) and d2 (512 @ level 5) BN only; d3 (512 @ 4), d4 (256 @ 3),
  d5 (128 @ 2), d6 (64 @ 1) IBN - the mirror image of the encoder. Output layer: none.
* Ehrenberg 32x32 U-Net (4 levels, S = 2): e2 IBN; e3, e4 BN; d1 (level 3) BN; d2, d3 IBN.
* 70x70 PatchGAN (levels 1, 2, 3, 3; S = 2): layer 1 (64) no norm; layer 2 (128) IBN;
  layer 3 (256) and the stride-1 layer 4 (512) BN only; output conv none.
* ResNet generator (levels 0, 1, 2; S = 1): stem c7s1 and the first downsampling, and
  both upsamplings IBN; the second downsampling and every residual block BN only.
* DCGAN generator (levels 1, 2, 3, 3, 2, 1; S = 2): layers 1, 2, 5, 6 IBN; 3, 4 BN.

The two halves keep their own sub-layers and variables (``instance_norm.gamma/beta``,
``batch_norm.gamma/beta/moving_mean/moving_variance``), but are computed together by
:func:`instance_batch_norm`: per-sample moments over H, W for every channel, batch
moments derived from them exactly, one normalisation pass and a hand-written backward
pass. Slicing the channels into two Keras layers and concatenating cost 2.2-3.5x more
(``benchmarks/layer_kernels.py``), mostly in the slices' gradients.

Spectral normalisation
----------------------
:class:`SpectralNorm` subclasses ``keras.layers.SpectralNormalization`` (Miyato et al.
2018) and keeps its interface and its ``vector_u`` weight, with three changes found by
testing the stock layer on Keras 3.15:

1. The stock layer *overwrites the wrapped kernel* with ``W / sigma`` on every training
   call, reading it through Keras autocasting; under ``mixed_bfloat16`` this rounds
   the float32 master weights to bfloat16 on every step. Here the kernel variable is
   never written: ``W / sigma`` is used for that call only (sigma in float32).
2. Because of that assignment the stock layer's gradient does not flow through
   ``sigma``; here it does (as in Miyato et al. and PyTorch), with ``u`` and ``v``
   held constant (stop-gradient).
3. The stock layer runs inference with the raw, last-assigned kernel (the optimiser
   has moved it since). Here inference divides by ``sigma = v W u^T`` from the stored
   ``u`` and ``v`` (a new ``vector_v`` weight): no power iteration, no state update,
   deterministic - PyTorch's eval behaviour.

Training calls (``training=True``) run ``power_iterations`` (default 1) power
iterations and update ``vector_u`` / ``vector_v``; the last half-iteration's ``v W``
gives sigma as well. In training the division by sigma is applied to whichever of
input, kernel and output is smallest (the conv is linear). The weight matrix is the kernel
reshaped to ``[-1, kernel.shape[-1]]``: ``[k*k*c_in, c_out]`` for ``Conv2D``,
``[k*k*c_out, c_in]`` for ``Conv2DTranspose`` (whose Keras kernel is
``[k, k, c_out, c_in]``; the transposed conv is the adjoint of that conv, so it has the
same spectral norm), ``[c_in, c_out]`` for ``Dense``.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from colourise_tf import ops as kernels

__all__ = [
    "SpectralNorm",
    "IBNorm",
    "InstanceNormalization",
    "ReflectionPadding2D",
    "MinSizeCheck",
    "ConvBlock",
    "resolve_norm",
    "ibn_depth",
    "kernel_initializer",
    "gamma_initializer",
    "make_norm",
]

_PACKAGE = "colourise_tf"
NORMS = ("none", "batch", "instance", "ibn")


def ibn_depth(max_level: int, ibn_levels: int = 0) -> int:
    """The IBN depth ``S``: ``ibn_levels`` if positive, else ``ceil(max_level / 2)``."""
    return int(ibn_levels) if ibn_levels > 0 else int(math.ceil(max_level / 2))


def resolve_norm(norm: str, level: int, max_level: int, ibn_levels: int = 0) -> str:
    """The normalisation a normalised layer at ``level`` really gets.

    Args:
        norm: the network's choice, one of ``none | batch | instance | ibn``.
        level: the layer's output level (output size ``H / 2**level``).
        max_level: the deepest level in the network.
        ibn_levels: ``S`` override (0 = ``ceil(max_level / 2)``).

    Returns:
        ``norm`` unchanged unless it is ``"ibn"``; then ``"ibn"`` for shallow layers
        (``level <= S``) and ``"batch"`` for deep ones.
    """
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of {NORMS}")
    if norm != "ibn":
        return norm
    return "ibn" if level <= ibn_depth(max_level, ibn_levels) else "batch"


def kernel_initializer(init: str) -> keras.initializers.Initializer:
    """Conv/dense kernel initialiser for an init scheme.

    ``"normal"`` is N(0, 0.02) (pix2pix, DCGAN); anything else is a Keras initializer
    name such as ``"glorot_uniform"`` (Xavier-uniform, Ehrenberg) or ``"he_normal"``.
    """
    if init == "normal":
        return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)
    return keras.initializers.get(init)


def gamma_initializer(init: str) -> keras.initializers.Initializer:
    """Normalisation scale initialiser: N(1, 0.02) for ``"normal"`` (pix2pix), else ones."""
    if init == "normal":
        return keras.initializers.RandomNormal(mean=1.0, stddev=0.02)
    return keras.initializers.Ones()


def _l2_normalize(x, eps: float = 1e-12):
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x)), eps))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpectralNorm(keras.layers.SpectralNormalization):
    """Spectral normalisation of a ``Conv2D``, ``Conv2DTranspose`` or ``Dense`` layer.

    See the module docstring for how it differs from the stock Keras layer. The
    normalised kernel ``W / sigma`` is computed in float32 on each call and never
    written back; ``vector_u`` (``[1, n_out]``) and ``vector_v`` (``[1, n_in]``) hold
    the power-iteration state and change only on training calls.

    Args:
        layer: the layer to wrap (not yet built).
        power_iterations: power iterations per training call.
        **kwargs: base layer arguments (``name``, ``dtype``...).
    """

    def __init__(self, layer: keras.layers.Layer, power_iterations: int = 1, **kwargs: Any) -> None:
        # Read the kernel in float32 even under a mixed policy; we cast ourselves.
        kwargs.setdefault("autocast", False)
        super().__init__(layer, power_iterations=power_iterations, **kwargs)
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense)):
            raise ValueError(f"SpectralNorm supports Conv2D, Conv2DTranspose and Dense, got {type(layer).__name__}")

    def build(self, input_shape) -> None:
        super().build(input_shape)
        n_in = int(math.prod(self.kernel_shape[:-1]))
        self.vector_v = self.add_weight(
            shape=(1, n_in),
            initializer="zeros",
            trainable=False,
            name="vector_v",
            dtype=self.kernel.dtype,
        )
        # A first power iteration so that inference before any training step already
        # divides by a sensible sigma (and u, v are unit vectors from the start).
        w = self._matrix()
        v = _l2_normalize(ops.matmul(_l2_normalize(ops.convert_to_tensor(self.vector_u)), ops.transpose(w)))
        u = _l2_normalize(ops.matmul(v, w))
        self.vector_u.assign(u)
        self.vector_v.assign(v)

    def _matrix(self):
        w = ops.cast(ops.convert_to_tensor(self.kernel), "float32")
        return ops.reshape(w, (-1, self.kernel_shape[-1]))

    def sigma(self, training: bool = False):
        """The spectral-norm estimate ``v W u^T`` (float32 scalar); no state update."""
        w = self._matrix()
        u = ops.cast(ops.convert_to_tensor(self.vector_u), "float32")
        v = ops.cast(ops.convert_to_tensor(self.vector_v), "float32")
        return ops.reshape(ops.matmul(ops.matmul(v, w), ops.transpose(u)), ())

    def normalized_kernel(self):
        """``W / sigma`` with the stored ``u``, ``v`` (what an inference call uses)."""
        w = ops.cast(ops.convert_to_tensor(self.kernel), "float32")
        return w / ops.maximum(self.sigma(), 1e-12)

    def call(self, inputs, training: bool = False, explicit_padding: int | None = None):
        w = self._matrix()
        if training:
            u = ops.cast(ops.convert_to_tensor(self.vector_u), "float32")
            for i in range(self.power_iterations):
                v = _l2_normalize(ops.matmul(u, ops.transpose(w)))
                if i + 1 < self.power_iterations:
                    u = _l2_normalize(ops.matmul(v, w))
            v = ops.stop_gradient(v)
            # The last half-iteration doubles as sigma: with t = v W and u = t / |t|,
            # sigma = v W u^T = sum(t * u). One matrix-vector product fewer per call;
            # the gradient reaches W through t (u and v are held constant).
            t = ops.matmul(v, w)
            u = ops.stop_gradient(_l2_normalize(t))
            sigma = ops.sum(t * u)
            self.vector_u.assign(ops.cast(u, self.vector_u.dtype))
            self.vector_v.assign(ops.cast(v, self.vector_v.dtype))
        else:
            u = ops.cast(ops.convert_to_tensor(self.vector_u), "float32")
            v = ops.cast(ops.convert_to_tensor(self.vector_v), "float32")
            sigma = ops.reshape(ops.matmul(ops.matmul(v, w), ops.transpose(u)), ())
        inv_sigma = 1.0 / ops.maximum(sigma, 1e-12)
        return self._apply(inputs, w, inv_sigma, explicit_padding, training=bool(training))

    def _apply(self, inputs, w, inv_sigma, explicit_padding: int | None = None, training: bool = True):
        """``layer(inputs)`` with kernel ``W / sigma``.

        The operation is linear, so ``conv(x, W / sigma) = conv(x / sigma, W) =
        conv(x, W) / sigma``; the division is applied to whichever of input, kernel
        and output has the fewest elements (statically), which for the large deep
        kernels of a U-Net saves a full pass over the kernel, and its gradient, per call.
        That choice, and :func:`conv_forward`'s training-only paths, apply when
        ``training``; inference divides the kernel.
        """
        layer = self.layer
        dtype = self.compute_dtype
        x = ops.cast(inputs, dtype)
        n_kernel = math.prod(self.kernel_shape)
        in_shape = tuple(x.shape)
        if explicit_padding is not None and len(in_shape) == 4:
            p2 = 2 * explicit_padding
            in_shape = (in_shape[0], *[None if d is None else d + p2 for d in in_shape[1:3]], in_shape[3])
        out_shape = self.compute_output_shape(in_shape)
        where = "kernel"
        n_in, n_out = _static_size(x.shape), _static_size(out_shape)
        if training and n_in is not None and n_in < n_kernel and (n_out is None or n_in <= n_out):
            where = "input"
        elif training and n_out is not None and n_out < n_kernel:
            where = "output"
        if where == "kernel":
            k = ops.cast(ops.reshape(w * inv_sigma, self.kernel_shape), dtype)
        else:
            k = ops.cast(ops.reshape(w, self.kernel_shape), dtype)
        if where == "input":
            x = x * ops.cast(inv_sigma, dtype)
        if isinstance(layer, keras.layers.Dense):
            y = ops.matmul(x, k)
        else:
            y = conv_forward(layer, x, k, explicit_padding, training=training)
        if where == "output":
            y = y * ops.cast(inv_sigma, dtype)
        if layer.use_bias:
            b = ops.cast(ops.convert_to_tensor(layer.bias), dtype)
            if getattr(layer, "data_format", "channels_last") == "channels_first":
                b = ops.reshape(b, (1, -1) + (1,) * (len(y.shape) - 2))
            y = y + b
        if layer.activation is not None:
            y = layer.activation(y)
        return y


def _static_size(shape) -> int | None:
    """Number of elements of a fully static shape, else ``None``."""
    if shape is None or any(d is None for d in shape):
        return None
    return int(math.prod(shape))


def _plain(layer) -> bool:
    """Whether ``layer`` is a conv :mod:`colourise_tf.ops` handles: NHWC, undilated,
    ungrouped, no output padding, "same" or "valid"."""
    return (
        layer.data_format == "channels_last"
        and tuple(layer.dilation_rate) == (1, 1)
        and getattr(layer, "groups", 1) == 1
        and getattr(layer, "output_padding", None) is None
        and layer.padding in ("same", "valid")
    )


def conv_forward(layer, x, kernel, explicit_padding: int | None = None, training: bool = False):
    """``layer``'s convolution (no bias, no activation) of ``x`` with ``kernel``.

    Args:
        layer: a ``Conv2D`` or ``Conv2DTranspose`` (its strides, padding, ...).
        x: input, already in the compute dtype.
        kernel: kernel in the layer's layout and the compute dtype.
        explicit_padding: zero pixels added per side before a "valid" ``Conv2D``
            (the PatchGAN's ``padding=1``).
        training: whether the call is part of a training step (see
            :func:`colourise_tf.ops.conv2d`: only then may a CPU-only kernel run).

    Plain layers (:func:`_plain`) go through :func:`colourise_tf.ops.conv2d` /
    :func:`colourise_tf.ops.conv2d_transpose`; others through Keras's own op.
    """
    if isinstance(layer, keras.layers.Conv2DTranspose):
        if not _plain(layer):
            return ops.conv_transpose(
                x,
                kernel,
                strides=list(layer.strides),
                padding=layer.padding,
                output_padding=layer.output_padding,
                dilation_rate=layer.dilation_rate,
                data_format=layer.data_format,
            )
        return kernels.conv2d_transpose(x, kernel, layer.strides, layer.padding, training=training)
    if not _plain(layer):
        if explicit_padding is not None:
            raise ValueError("explicit padding supports channels_last, undilated, ungrouped Conv2D only")
        return layer.convolution_op(x, kernel)
    return kernels.conv2d(x, kernel, layer.strides, layer.padding, explicit_padding=explicit_padding, training=training)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` computed by TensorFlow's fused kernel.

    Keras 3 normalises with separate moment and element-wise ops; TF's
    ``FusedBatchNormV3`` does forward and backward in one kernel each: measured
    about 8x cheaper on this project's 2-core CPU (53.6 ms -> 6.6 ms of norm cost
    for forward + backward at 4x128x128x64), which is ~40% of a U-Net step.

    Same variables (``gamma``, ``beta``, ``moving_mean``, ``moving_variance``),
    config and semantics as the Keras layer, so checkpoints interchange, with two
    documented differences: the moving variance is updated with the unbiased batch
    variance the fused kernel returns (the n/(n-1) Bessel factor, as Keras 2 and
    PyTorch do), and epsilon is at least 1.001e-5 (the kernel's floor). Anything
    the fused kernel cannot do (masks, renorm, rank != 4, axis != -1, no
    centre/scale) falls back to the Keras implementation.
    """

    def _fusable(self, inputs, mask) -> bool:
        return (
            mask is None
            and not self.renorm
            and self.scale
            and self.center
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and keras.backend.backend() == "tensorflow"
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        # The kernel takes float16/bfloat16 inputs with float32 scale, offset and
        # statistics (it accumulates in float32), so no cast pass is needed.
        x = inputs if inputs.dtype in (tf.float32, tf.bfloat16, tf.float16) else tf.cast(inputs, tf.float32)
        gamma = tf.cast(self.gamma, tf.float32)
        beta = tf.cast(self.beta, tf.float32)
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=self.epsilon, is_training=True)
            m = self.momentum
            self.moving_mean.assign(tf.cast(self.moving_mean, tf.float32) * m + mean * (1.0 - m))
            self.moving_variance.assign(tf.cast(self.moving_variance, tf.float32) * m + variance * (1.0 - m))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x,
                gamma,
                beta,
                mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32),
                epsilon=self.epsilon,
                is_training=False,
            )
        return tf.cast(y, self.compute_dtype)


def _channel_is_instance(n_instance: int, channels: int) -> tf.Tensor:
    return tf.range(channels) < n_instance


@tf.custom_gradient
def _ibn_train(x, gamma, beta, eps, is_in):
    """Forward/backward of IBN in training mode; see :func:`instance_batch_norm`.

    Element-wise work stays in ``x.dtype`` (half the memory traffic under bfloat16);
    per-channel statistics are float32. The input is centred on a first (rounded)
    mean before the moments are taken, so nothing cancels: mean = m0 + mean(x - m0),
    var = mean((x - m0)^2) - mean(x - m0)^2 with ``x - m0`` small and exact.
    """
    dt = x.dtype
    f32 = tf.float32
    m0 = tf.reduce_mean(x, [1, 2], keepdims=True)  # [N, 1, 1, C] (TF accumulates in float32)
    d = x - m0
    d_mean = tf.cast(tf.reduce_mean(d, [1, 2], keepdims=True), f32)
    d_sq = tf.cast(tf.reduce_mean(tf.square(d), [1, 2], keepdims=True), f32)
    m_i = tf.cast(m0, f32) + d_mean
    v_i = tf.maximum(d_sq - tf.square(d_mean), 0.0)
    # Batch moments follow exactly from the per-sample ones (equal group sizes): the
    # mean of the means, and the mean of the variances plus the variance of the means.
    m_b = tf.reduce_mean(m_i, 0, keepdims=True)
    v_b = tf.reduce_mean(v_i, 0, keepdims=True) + tf.reduce_mean(tf.math.squared_difference(m_i, m_b), 0, keepdims=True)
    m = tf.where(is_in, m_i, m_b)
    r = tf.math.rsqrt(tf.where(is_in, v_i, v_b) + eps)
    scale = gamma * r
    # y = (x - m) * scale + beta = d * scale + (beta - (m - m0) * scale)
    shift = beta - (m - tf.cast(m0, f32)) * scale
    y = d * tf.cast(scale, dt) + tf.cast(shift, dt)
    hw = float(x.shape[1] * x.shape[2])

    def grad(dy, _dmean, _dvar):
        # Normalisation backward with the means over H, W for instance channels and
        # over N, H, W for batch channels:
        #   dx = gamma r (dy - mean(dy) - xhat mean(dy xhat)),  xhat = (x - m) r,
        # and mean(dy xhat) = r (mean(dy d) - (m - m0) mean(dy)).
        dy = tf.cast(dy, dt)
        a = tf.cast(tf.reduce_mean(dy, [1, 2], keepdims=True), f32)
        b = tf.cast(tf.reduce_mean(dy * d, [1, 2], keepdims=True), f32)
        b = r * (b - (m - tf.cast(m0, f32)) * a)
        # For batch channels r and m are shared, so the mean over N of the per-sample
        # terms is the mean over N, H, W.
        a_s = tf.where(is_in, a, tf.reduce_mean(a, 0, keepdims=True))
        b_s = tf.where(is_in, b, tf.reduce_mean(b, 0, keepdims=True))
        dbeta = tf.reduce_sum(a, [0, 1, 2]) * hw
        dgamma = tf.reduce_sum(b, [0, 1, 2]) * hw
        # dx = scale dy + (x - m) c1 - scale a_s = scale dy + d c1 + c0
        c1 = -scale * r * b_s
        c0 = -scale * a_s - (m - tf.cast(m0, f32)) * c1
        dx = dy * tf.cast(scale, dt) + (d * tf.cast(c1, dt) + tf.cast(c0, dt))
        return dx, dgamma, dbeta, None, None

    return (y, tf.reshape(m_b, [-1]), tf.reshape(v_b, [-1])), grad


def instance_batch_norm(x, gamma, beta, n_instance: int, eps_instance: float, eps_batch: float):
    """Instance norm on channels ``[0, n_instance)``, batch norm on the rest, training mode.

    One pass over the tensor for both halves (no channel slicing, whose copies and
    gradients cost more than the normalisation itself), with a hand-written backward
    pass. Statistics are computed in float32 whatever the dtype of ``x``.

    Args:
        x: ``[N, H, W, C]`` with static H, W, C.
        gamma, beta: float32 ``[C]`` affine parameters (instance channels first).
        n_instance: number of instance-normalised channels (0 = plain BN, C = plain IN).
        eps_instance, eps_batch: epsilons of the two halves.

    Returns:
        ``(y, batch_mean, batch_var)``: ``y`` in ``x.dtype``; the (biased) batch mean and
        variance of every channel over N, H, W, float32 ``[C]``, for moving averages.
    """
    c = int(x.shape[-1])
    is_in = _channel_is_instance(n_instance, c)
    eps = tf.where(is_in, tf.constant(eps_instance, tf.float32), tf.constant(eps_batch, tf.float32))
    return _ibn_train(x, gamma, beta, eps, is_in)


def instance_batch_norm_inference(x, gamma, beta, n_instance, eps_instance, eps_batch, moving_mean, moving_var):
    """Inference-mode counterpart of :func:`instance_batch_norm`: the instance channels
    still use their own spatial statistics, the batch channels the moving ones
    (``moving_mean`` / ``moving_var``: float32 ``[C - n_instance]``)."""
    c = int(x.shape[-1])
    is_in = _channel_is_instance(n_instance, c)
    xf = tf.cast(x, tf.float32)
    m_i, v_i = tf.nn.moments(xf, [1, 2], keepdims=True)
    pad = tf.zeros([n_instance], tf.float32)
    m = tf.where(is_in, m_i, tf.concat([pad, moving_mean], 0))
    v = tf.where(is_in, v_i + eps_instance, tf.concat([pad, moving_var], 0) + eps_batch)
    scale = gamma * tf.math.rsqrt(v)
    return tf.cast(xf * scale + (beta - m * scale), x.dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InstanceNormalization(keras.layers.GroupNormalization):
    """Instance norm: ``keras.layers.GroupNormalization(groups=-1)`` computed by
    :func:`instance_batch_norm` (one pass, hand-written backward, float32 statistics).

    Same variables (``gamma``, ``beta``), config and results as the Keras layer, so
    checkpoints interchange; only ``groups=-1`` on rank-4 channels-last inputs without a
    mask takes the fast path, anything else is the Keras computation.
    """

    def __init__(self, groups: int = -1, **kwargs: Any) -> None:
        super().__init__(groups=groups, **kwargs)

    def call(self, inputs, mask=None, training=None):
        channels = inputs.shape[-1]
        fast = (
            mask is None
            and self.groups in (-1, channels)
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and self.scale
            and self.center
            and None not in inputs.shape[1:]
        )
        if not fast:
            return super().call(inputs, mask=mask)
        c = int(channels)
        gamma, beta = tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32)
        if training:
            y, _, _ = instance_batch_norm(inputs, gamma, beta, c, self.epsilon, self.epsilon)
        else:  # plain ops (no custom gradient) for exported graphs
            none = tf.zeros([0], tf.float32)
            y = instance_batch_norm_inference(inputs, gamma, beta, c, self.epsilon, self.epsilon, none, none)
        return tf.cast(y, self.compute_dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class IBNorm(keras.layers.Layer):
    """Instance-Batch normalisation (IBN-Net "IBN-a") over the last axis.

    Channels ``[0, n_in)`` with ``n_in = max(1, floor(ratio * C))`` go through affine
    instance norm (``GroupNormalization(groups=-1)``: per-sample, per-channel spatial
    statistics; ``gamma``/``beta`` only). Channels ``[n_in, C)`` go through
    ``BatchNormalization`` (batch statistics in training, ``moving_mean`` /
    ``moving_variance`` at inference). Needs ``C >= 2``.

    Args:
        ratio: fraction of channels instance-normalised (IBN-Net: 0.5).
        momentum: batch-norm moving-average momentum (Keras convention).
        epsilon: epsilon of both halves.
        gamma_init: ``"normal"`` (N(1, 0.02)) or anything else for ones.
        **kwargs: base layer arguments.
    """

    def __init__(
        self,
        ratio: float = 0.5,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        gamma_init: str = "ones",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"ratio must be in (0, 1), got {ratio}")
        self.ratio = float(ratio)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.gamma_init = gamma_init
        self.instance_norm = keras.layers.GroupNormalization(
            groups=-1, epsilon=epsilon, gamma_initializer=gamma_initializer(gamma_init), name="instance_norm"
        )
        self.batch_norm = FusedBatchNormalization(
            momentum=momentum, epsilon=epsilon, gamma_initializer=gamma_initializer(gamma_init), name="batch_norm"
        )
        self.n_instance: int | None = None

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        if channels < 2:
            raise ValueError(f"IBNorm needs at least 2 channels, got {channels}")
        self.n_instance = min(channels - 1, max(1, int(math.floor(self.ratio * channels))))
        self.instance_norm.build(tuple(input_shape[:-1]) + (self.n_instance,))
        self.batch_norm.build(tuple(input_shape[:-1]) + (channels - self.n_instance,))

    def call(self, inputs, training: bool | None = None):
        k = self.n_instance
        inn, bn = self.instance_norm, self.batch_norm
        gamma = tf.concat([tf.cast(inn.gamma, tf.float32), tf.cast(bn.gamma, tf.float32)], 0)
        beta = tf.concat([tf.cast(inn.beta, tf.float32), tf.cast(bn.beta, tf.float32)], 0)
        # The fused BN kernel floors epsilon at 1.001e-5; the BN half keeps that floor.
        bn_eps = max(bn.epsilon, 1.001e-5)
        if training and bn.trainable:
            y, batch_mean, batch_var = instance_batch_norm(inputs, gamma, beta, k, inn.epsilon, bn_eps)
            n = tf.cast(tf.size(inputs) // inputs.shape[-1], tf.float32)  # N * H * W
            unbiased = batch_var[k:] * (n / tf.maximum(n - 1.0, 1.0))
            m = bn.momentum
            bn.moving_mean.assign(tf.cast(bn.moving_mean, tf.float32) * m + batch_mean[k:] * (1.0 - m))
            bn.moving_variance.assign(tf.cast(bn.moving_variance, tf.float32) * m + unbiased * (1.0 - m))
        else:
            y = instance_batch_norm_inference(
                inputs,
                gamma,
                beta,
                k,
                inn.epsilon,
                bn_eps,
                tf.cast(bn.moving_mean, tf.float32),
                tf.cast(bn.moving_variance, tf.float32),
            )
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "ratio": self.ratio,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "gamma_init": self.gamma_init,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ReflectionPadding2D(keras.layers.Layer):
    """Reflection padding of the two spatial axes (NHWC), as in the ResNet generator.

    Args:
        padding: pixels added on each side of H and W.
    """

    def __init__(self, padding: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, inputs):
        p = self.padding
        return ops.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        p = 2 * self.padding
        return (
            input_shape[0],
            None if input_shape[1] is None else input_shape[1] + p,
            None if input_shape[2] is None else input_shape[2] + p,
            input_shape[3],
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MinSizeCheck(keras.layers.Layer):
    """Identity that raises ``ValueError`` if a static H or W is below ``min_size``.

    TensorFlow's CPU convolutions silently return wrongly-shaped results when a
    "valid" convolution's output would be empty; this turns that into an error at
    trace time. Dynamic (``None``) sizes pass unchecked; no op is added to the graph.

    Args:
        min_size: smallest allowed height and width.
    """

    def __init__(self, min_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_size = int(min_size)

    def call(self, inputs):
        for axis in (1, 2):
            n = inputs.shape[axis]
            if n is not None and n < self.min_size:
                raise ValueError(
                    f"{self.name}: input of spatial size {tuple(inputs.shape[1:3])} is smaller than the "
                    f"minimum {self.min_size}x{self.min_size} this network accepts"
                )
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "min_size": self.min_size}


def make_norm(
    norm: str,
    *,
    init: str = "normal",
    momentum: float = 0.9,
    epsilon: float = 1e-5,
    ibn_ratio: float = 0.5,
    name: str | None = None,
) -> keras.layers.Layer | None:
    """A fresh normalisation layer for ``norm`` (``None`` for ``"none"``)."""
    if norm == "none":
        return None
    gamma = gamma_initializer(init)
    if norm == "batch":
        return FusedBatchNormalization(momentum=momentum, epsilon=epsilon, gamma_initializer=gamma, name=name)
    if norm == "instance":
        return InstanceNormalization(epsilon=epsilon, gamma_initializer=gamma, name=name)
    if norm == "ibn":
        return IBNorm(ratio=ibn_ratio, momentum=momentum, epsilon=epsilon, gamma_init=init, name=name)
    raise ValueError(f"norm={norm!r} is not one of {NORMS}")


_ACTIVATIONS = ("linear", "relu", "leaky_relu", "tanh", "sigmoid")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConvBlock(keras.layers.Layer):
    """``[pad] -> conv or transposed conv [SN] -> [norm] -> [dropout] -> [activation]``.

    Args:
        filters: output channels.
        kernel_size: square kernel size.
        strides: square stride.
        transpose: use ``Conv2DTranspose`` (upsampling) instead of ``Conv2D``.
        padding: ``"same"``, ``"valid"`` or an int ``p``: explicit padding of ``p``
            pixels per side followed by a ``"valid"`` conv (pix2pix's PatchGAN uses
            ``p = 1`` with 4x4 kernels).
        pad_mode: ``"constant"`` (zeros) or ``"reflect"`` for an int ``padding``.
        norm: ``none | batch | instance | ibn`` (IBN here means "this layer is IBN";
            the depth rule is applied by the model builders via :func:`resolve_norm`).
        spectral_norm: wrap the conv in :class:`SpectralNorm`.
        activation: ``linear | relu | leaky_relu | tanh | sigmoid`` or ``None``.
        leaky_slope: LeakyReLU negative slope.
        dropout: dropout rate after the norm (0 = none).
        use_bias: conv bias; ``None`` = only without normalisation (a bias before a
            norm that subtracts the mean is redundant).
        init: kernel init scheme (see :func:`kernel_initializer`); also picks the norm
            scale init (:func:`gamma_initializer`).
        ibn_ratio: instance-normalised channel fraction when ``norm="ibn"``.
        bn_momentum: batch-norm momentum.
        norm_epsilon: normalisation epsilon.
        **kwargs: base layer arguments.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 4,
        strides: int = 2,
        transpose: bool = False,
        padding: str | int = "same",
        pad_mode: str = "constant",
        norm: str = "none",
        spectral_norm: bool = False,
        activation: str | None = None,
        leaky_slope: float = 0.2,
        dropout: float = 0.0,
        use_bias: bool | None = None,
        init: str = "normal",
        ibn_ratio: float = 0.5,
        bn_momentum: float = 0.9,
        norm_epsilon: float = 1e-5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} is not one of {NORMS}")
        if activation is not None and activation not in _ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of {_ACTIVATIONS} or None")
        if pad_mode not in ("constant", "reflect"):
            raise ValueError(f"pad_mode={pad_mode!r} must be 'constant' or 'reflect'")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.transpose = bool(transpose)
        self.padding = padding if isinstance(padding, str) else int(padding)
        self.pad_mode = pad_mode
        self.norm = norm
        self.spectral_norm = bool(spectral_norm)
        self.activation = activation
        self.leaky_slope = float(leaky_slope)
        self.dropout = float(dropout)
        self.use_bias = (norm == "none") if use_bias is None else bool(use_bias)
        self.init = init
        self.ibn_ratio = float(ibn_ratio)
        self.bn_momentum = float(bn_momentum)
        self.norm_epsilon = float(norm_epsilon)

        self.pad = None
        conv_padding = self.padding
        if isinstance(self.padding, int):
            conv_padding = "valid"
            if self.padding > 0:
                self.pad = (
                    ReflectionPadding2D(self.padding, name="pad")
                    if pad_mode == "reflect"
                    else keras.layers.ZeroPadding2D(self.padding, name="pad")
                )
        conv_cls = keras.layers.Conv2DTranspose if self.transpose else keras.layers.Conv2D
        conv = conv_cls(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding=conv_padding,
            use_bias=self.use_bias,
            kernel_initializer=kernel_initializer(init),
            bias_initializer="zeros",
            name="conv",
        )
        self.conv = SpectralNorm(conv, name="sn") if self.spectral_norm else conv
        self.norm_layer = make_norm(
            norm, init=init, momentum=bn_momentum, epsilon=norm_epsilon, ibn_ratio=ibn_ratio, name="norm"
        )
        self.dropout_layer = keras.layers.Dropout(self.dropout, name="dropout") if self.dropout > 0 else None
        if activation in (None, "linear"):
            self.act = None
        elif activation == "leaky_relu":
            self.act = keras.layers.LeakyReLU(negative_slope=self.leaky_slope, name="act")
        elif activation == "relu":
            self.act = keras.layers.ReLU(name="act")
        else:
            self.act = keras.layers.Activation(activation, name="act")

    def build(self, input_shape) -> None:
        shape = tuple(input_shape)
        if self.pad is not None:
            self.pad.build(shape)
            shape = self.pad.compute_output_shape(shape)
        self.conv.build(shape)
        shape = self.conv.compute_output_shape(shape)
        if self.norm_layer is not None:
            self.norm_layer.build(shape)
        if self.dropout_layer is not None:
            self.dropout_layer.build(shape)
        if self.act is not None:
            self.act.build(shape)

    def _explicit_padding(self) -> int | None:
        """Zero padding handed to the convolution itself (see :func:`colourise_tf.ops.conv2d`)."""
        if self.pad is None or self.pad_mode != "constant" or self.transpose:
            return None
        return self.padding

    def call(self, inputs, training: bool | None = None):
        x = inputs
        explicit = self._explicit_padding()
        if self.pad is not None and explicit is None:
            x = self.pad(x)
        if self.spectral_norm:
            x = self.conv(x, training=bool(training), explicit_padding=explicit)
        else:
            # The plain layer's conv, through conv_forward for the same fast paths as SN.
            conv = self.conv
            if not conv.built:
                conv.build(x.shape)
            dtype = conv.compute_dtype
            x = conv_forward(conv, ops.cast(x, dtype), ops.cast(conv.kernel, dtype), explicit, training=bool(training))
            if conv.use_bias:
                x = x + ops.cast(conv.bias, dtype)
        if self.norm_layer is not None:
            x = self.norm_layer(x, training=training)
        if self.dropout_layer is not None:
            x = self.dropout_layer(x, training=training)
        if self.act is not None and training and self.activation == "leaky_relu":
            # max(x, a x) = LeakyReLU(x) for 0 <= a < 1, with a gradient that does not
            # read the pre-activation. With LeakyReluGrad reading it, Grappler's
            # remapper fused conv + bias + LeakyRelu, deleted the bias add the gradient
            # still read, and then gave up on the whole training graph with an error
            # ("remapper failed: ... fanout ... LeakyReluGrad exist for missing node").
            # Inference and exports keep the LeakyRelu op.
            x = ops.maximum(x, ops.cast(self.leaky_slope, x.dtype) * x)
        elif self.act is not None:
            x = self.act(x)
        return x

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if self.pad is not None:
            shape = self.pad.compute_output_shape(shape)
        return self.conv.compute_output_shape(shape)

    @property
    def conv_layer(self) -> keras.layers.Layer:
        """The underlying ``Conv2D`` / ``Conv2DTranspose`` (inside the SN wrapper if any)."""
        return self.conv.layer if self.spectral_norm else self.conv

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "transpose": self.transpose,
            "padding": self.padding,
            "pad_mode": self.pad_mode,
            "norm": self.norm,
            "spectral_norm": self.spectral_norm,
            "activation": self.activation,
            "leaky_slope": self.leaky_slope,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "init": self.init,
            "ibn_ratio": self.ibn_ratio,
            "bn_momentum": self.bn_momentum,
            "norm_epsilon": self.norm_epsilon,
        }
