"""Discriminators: 70x70 PatchGAN, 1x1 PixelGAN, DCGAN classifier, multi-scale wrapper.

Every discriminator takes ONE input ``[B, H, W, C_d]`` = concat(L, chroma[, mask]) in
[-1, 1] and returns a Python LIST of float32 LOGIT maps (no sigmoid inside), one per
scale: ``[B, H_n, W_n, 1]`` for PatchGAN / PixelGAN, ``[[B, 1]]`` for DCGAN. The list
is always a list, also for one scale (:class:`ListOutputModel`; a plain functional
Keras model unwraps one-element output lists).

PatchGAN (pix2pix; Górriz et al. 2019 §IV-B)
----------------------------------
``filters = (64, 128, 256, 512)``: three 4x4 stride-2 convs (64, 128, 256), one 4x4
stride-1 conv (512), one 4x4 stride-1 conv to 1 channel; every conv pads 1 pixel per
side (zeros) and is "valid" otherwise, exactly as pix2pix. LeakyReLU(0.2) after every
hidden conv; no norm on the first layer; norm / SN as configured (SN on every conv).
Receptive field, from the output back: r = 1 -> 4 -> 7 -> 16 -> 34 -> 70. Output size
per spatial axis: ``n -> floor((n + 2 - 4) / s) + 1`` per layer, i.e. 256 -> 30x30.
In general all but the last width are stride-2 layers. The smallest valid input is
24x24 for four widths (:func:`patchgan_min_input_size`), so 3 scales need >= 96x96:
a static input smaller than that raises ``ValueError`` (:class:`MinSizeCheck`).

PixelGAN (Ehrenberg §1.2 / §1.3)
-------------------------------
Five 1x1 convs: ``filters[0]`` with no norm + LeakyReLU(0.2); ``filters[1..3]`` with
SN (``spectral_norm``) or the norm choice (``norm="batch"``) + LeakyReLU(0.2); a last
1x1 conv to 1 channel (no norm, no SN). Receptive field 1x1; output ``[B, H, W, 1]``.

tanh heads (Ehrenberg)
---------------------
Ehrenberg's discriminators end in tanh. Reading the tanh output as a probability
``p = (tanh(z) + 1) / 2`` gives exactly ``p = sigmoid(2 z)`` (since
``tanh(z) = 2 sigmoid(2z) - 1``). With ``tanh_head=True`` we therefore return the logit
``2 z`` (z = the last conv's pre-activation): every logit-based loss
(``sigmoid_cross_entropy(2z)``) then equals the paper's tanh discriminator read as a
probability, with no saturation-prone ``log(1 + tanh)`` in the graph.

DCGAN (the DCGAN report)
----------------
Four 4x4 stride-2 convs (64, 128, 256, 512; "same" padding; no norm on the first,
then norm; LeakyReLU(0.2)), flatten, dense -> one logit per image ``[B, 1]``. The
paper's 2-way softmax classifier is equivalent to one sigmoid logit. Fixed input size.

Multi-scale (Górriz et al. 2019 §III-D, eq. 6)
------------------------------------
``num_scales`` copies with separate weights; copy ``n`` sees the input average-pooled
by ``2**n`` (a 2x2 average pool applied ``n`` times); the outputs are returned as a list
in scale order (x1, x2, x4, ...). The losses sum over the list.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from colourise_tf.layers import ConvBlock, MinSizeCheck, SpectralNorm, kernel_initializer, resolve_norm

__all__ = [
    "ListOutputModel",
    "patchgan_discriminator",
    "pixelgan_discriminator",
    "dcgan_discriminator",
    "multiscale_discriminator",
    "patchgan_output_size",
    "patchgan_receptive_field",
    "patchgan_min_input_size",
]


@keras.saving.register_keras_serializable(package="colourise_tf")
class ListOutputModel(keras.Model):
    """A functional model whose outputs are always a Python list.

    Keras' functional models return a bare tensor when built with a one-element
    output list; the discriminator contract is "always a list", so this subclass
    re-wraps. Construct like a functional model: ``ListOutputModel(inputs, outputs)``.
    """

    def call(self, inputs, training=None, mask=None, **kwargs):
        out = super().call(inputs, training=training, mask=mask, **kwargs)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def compute_output_spec(self, inputs, training=None, mask=None):
        out = super().compute_output_spec(inputs, training=training, mask=mask)
        return list(out) if isinstance(out, (list, tuple)) else [out]


def patchgan_output_size(n: int, n_layers: int = 4) -> int:
    """Output size of the PatchGAN along one axis of size ``n``.

    Each conv: ``out = floor((in + 2p - k) / s) + 1`` with k = 4, p = 1, s = 2 for the
    first ``n_layers - 1`` layers and s = 1 for the last hidden layer and the output.
    """
    for s in [2] * (n_layers - 1) + [1, 1]:
        n = (n + 2 * 1 - 4) // s + 1
    return n


def patchgan_min_input_size(n_layers: int = 4) -> int:
    """Smallest input size for which the PatchGAN still has a 1x1 output.

    Smaller inputs make TensorFlow's CPU convolution return garbage shapes instead of
    failing, so :func:`patchgan_discriminator` checks the static input size.
    """
    n = 1
    while patchgan_output_size(n, n_layers) < 1:
        n += 1
    return n


def patchgan_receptive_field(n_layers: int = 4) -> int:
    """Receptive field of one PatchGAN output: ``r <- (r - 1) * s + k`` from the output back."""
    r = 1
    for s in reversed([2] * (n_layers - 1) + [1, 1]):
        r = (r - 1) * s + 4
    return r


def _logit_head(x, tanh_head: bool, name: str):
    if tanh_head:
        # (tanh(z) + 1) / 2 == sigmoid(2 z): return the logit 2 z.
        return keras.layers.Rescaling(2.0, dtype="float32", name=name)(x)
    return keras.layers.Activation("linear", dtype="float32", name=name)(x)


def patchgan_discriminator(
    input_channels: int = 3,
    filters: Sequence[int] = (64, 128, 256, 512),
    *,
    norm: str = "batch",
    spectral_norm: bool = False,
    init: str = "normal",
    tanh_head: bool = False,
    ibn_levels: int = 0,
    ibn_ratio: float = 0.5,
    bn_momentum: float = 0.9,
    norm_epsilon: float = 1e-5,
    leaky_slope: float = 0.2,
    name: str = "patchgan",
) -> keras.Model:
    """One PatchGAN (see the module docstring). Returns logits ``[B, H', W', 1]``.

    Args:
        input_channels: ``C_d`` = 3 (L, a, b) or 4 with a mask.
        filters: widths; all but the last are stride 2. ``(64, 128, 256, 512)`` = 70x70.
        norm: norm of every layer but the first (``ibn`` split by depth).
        spectral_norm: SN on every conv, the output conv included.
        init: kernel init scheme.
        tanh_head: Ehrenberg tanh output, returned as the logit ``2 z``.
        Other arguments: see :class:`colourise_tf.layers.ConvBlock`.
    """
    common = dict(
        init=init, ibn_ratio=ibn_ratio, bn_momentum=bn_momentum, norm_epsilon=norm_epsilon, leaky_slope=leaky_slope
    )
    n = len(filters)
    max_level = max(n - 1, 1)
    inputs = keras.Input((None, None, input_channels), name=f"{name}_input")
    x = MinSizeCheck(patchgan_min_input_size(n), name="min_size_check")(inputs)
    for i, f in enumerate(filters):
        stride = 2 if i < n - 1 else 1
        level = min(i + 1, max_level)
        layer_norm = "none" if i == 0 else resolve_norm(norm, level, max_level, ibn_levels)
        x = ConvBlock(
            f,
            4,
            stride,
            padding=1,
            norm=layer_norm,
            spectral_norm=spectral_norm,
            activation="leaky_relu",
            name=f"layer{i + 1}",
            **common,
        )(x)
    x = ConvBlock(
        1,
        4,
        1,
        padding=1,
        norm="none",
        spectral_norm=spectral_norm,
        activation=None,
        use_bias=True,
        name="output_conv",
        **common,
    )(x)
    return keras.Model(inputs, _logit_head(x, tanh_head, "logits"), name=name)


def pixelgan_discriminator(
    input_channels: int = 3,
    filters: Sequence[int] = (64, 128, 256, 512),
    *,
    norm: str = "none",
    spectral_norm: bool = True,
    init: str = "normal",
    tanh_head: bool = True,
    ibn_levels: int = 0,
    ibn_ratio: float = 0.5,
    bn_momentum: float = 0.9,
    norm_epsilon: float = 1e-5,
    leaky_slope: float = 0.2,
    name: str = "pixelgan",
) -> keras.Model:
    """Ehrenberg's 1x1 PatchGAN ("PixelGAN"). Returns logits ``[B, H, W, 1]``.

    Args:
        filters: the four hidden widths; SN / ``norm`` apply to ``filters[1:]`` only.
        Other arguments as :func:`patchgan_discriminator`.
    """
    if len(filters) != 4:
        raise ValueError(f"pixelgan needs 4 hidden widths, got {filters}")
    common = dict(
        init=init, ibn_ratio=ibn_ratio, bn_momentum=bn_momentum, norm_epsilon=norm_epsilon, leaky_slope=leaky_slope
    )
    inputs = keras.Input((None, None, input_channels), name=f"{name}_input")
    x = ConvBlock(filters[0], 1, 1, padding="valid", norm="none", activation="leaky_relu", name="layer1", **common)(
        inputs
    )
    for i, f in enumerate(filters[1:]):
        x = ConvBlock(
            f,
            1,
            1,
            padding="valid",
            norm=resolve_norm(norm, 0, 0, ibn_levels),
            spectral_norm=spectral_norm,
            activation="leaky_relu",
            name=f"layer{i + 2}",
            **common,
        )(x)
    x = ConvBlock(1, 1, 1, padding="valid", norm="none", activation=None, use_bias=True, name="output_conv", **common)(
        x
    )
    return keras.Model(inputs, _logit_head(x, tanh_head, "logits"), name=name)


def dcgan_discriminator(
    input_channels: int = 3,
    image_size: int = 64,
    filters: Sequence[int] = (64, 128, 256, 512),
    *,
    norm: str = "batch",
    spectral_norm: bool = False,
    init: str = "normal",
    ibn_levels: int = 0,
    ibn_ratio: float = 0.5,
    bn_momentum: float = 0.9,
    norm_epsilon: float = 1e-5,
    leaky_slope: float = 0.2,
    name: str = "dcgan",
) -> keras.Model:
    """The DCGAN report's discriminator: 4 stride-2 convs + a dense classifier -> ``[B, 1]`` logit."""
    common = dict(
        init=init, ibn_ratio=ibn_ratio, bn_momentum=bn_momentum, norm_epsilon=norm_epsilon, leaky_slope=leaky_slope
    )
    inputs = keras.Input((image_size, image_size, input_channels), name=f"{name}_input")
    x = inputs
    for i, f in enumerate(filters):
        layer_norm = "none" if i == 0 else resolve_norm(norm, i + 1, len(filters), ibn_levels)
        x = ConvBlock(
            f,
            4,
            2,
            padding="same",
            norm=layer_norm,
            spectral_norm=spectral_norm,
            activation="leaky_relu",
            name=f"layer{i + 1}",
            **common,
        )(x)
    x = keras.layers.Flatten(name="flatten")(x)
    dense = keras.layers.Dense(1, kernel_initializer=kernel_initializer(init), name="classifier")
    if spectral_norm:
        dense = SpectralNorm(dense, name="classifier_sn")
    x = dense(x)
    return keras.Model(inputs, _logit_head(x, False, "logits"), name=name)


def multiscale_discriminator(
    make_one, num_scales: int, input_shape: tuple, name: str = "discriminator"
) -> ListOutputModel:
    """Wraps ``num_scales`` discriminators (separate weights) on x1, x2, x4... inputs.

    Args:
        make_one: ``make_one(scale_index) -> keras.Model`` building one discriminator.
        num_scales: number of copies (1 = a single-scale discriminator, still a list).
        input_shape: ``(H, W, C_d)``; H and W may be ``None``.
        name: model name.

    Returns:
        :class:`ListOutputModel` returning ``[logits_x1, logits_x2, ...]``.
    """
    inputs = keras.Input(input_shape, name="discriminator_input")
    x = inputs
    outputs = []
    for s in range(num_scales):
        if s > 0:
            x = keras.layers.AveragePooling2D(2, name=f"downsample_x{2**s}")(x)
        outputs.append(make_one(s)(x))
    return ListOutputModel(inputs, outputs, name=name)
