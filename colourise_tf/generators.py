"""Generators: U-Net (+ segmentation variants), ResNet, conditional DCGAN.

All generators are functional ``keras.Model`` objects with ONE input
``[B, H, W, C_in]`` (float32, channels: L in [-1, 1]; then noise if any; then mask and
two hint chroma channels if any) and tanh chroma output(s) cast to float32 (so they
stay float32 under a mixed-precision policy). Spatial dimensions are ``None``: any
multiple of ``2**depth`` works (the U-Net needs ``H % 2**len(filters) == 0``; ResNet
and DCGAN need multiples of 4 and 8).

U-Net (Górriz et al. 2019 §IV-B; Tarrés 2021 §4.1.1; Ehrenberg §1.2)
------------------------------------------------------
With encoder widths ``filters = (f_1, ..., f_D)``:

* encoder block ``e_i`` (i = 1..D): 4x4 conv, stride 2, "same" padding, norm (none for
  e_1 unless ``first_norm``), LeakyReLU(0.2). Output at level ``i`` (``H / 2**i``).
* decoder block ``d_j`` (j = 1..D-1): 4x4 transposed conv, stride 2, width
  ``f_{D-j}``, norm, dropout (``dropout`` rate in ``d_1..d_{dropout_blocks}``; pix2pix:
  first 3 blocks, 0.5), ReLU; then concatenated with the encoder output of the same
  size, ``e_{D-j}`` (skips i <-> L-i).
* output: 4x4 transposed conv, stride 2, no norm, bias -> ``out_channels`` -> tanh.

For the Górriz et al. 2019 widths (64, 128, 256, 512, 512, 512, 512) the decoder widths are
``reversed(filters[:-1])`` = 512:512:512:256:128:64, exactly the paper's
d512:d512:d512:d256:d128:d64, and a 256x256 input reaches a 2x2 bottleneck. The
Ehrenberg 32x32 U-Net is ``filters = (64, 128, 256, 512)``: 4 stride-2 convs down,
3 decoder blocks + the output layer up.

ResNet (Ehrenberg §1.1; pix2pix/CycleGAN ``resnet_9blocks``)
-----------------------------------------------------------
``c7s1-f_0`` (reflection pad 3, 7x7 conv, BN, ReLU); for each further width a 3x3
stride-2 conv (zero pad 1), BN, ReLU; ``resnet_blocks`` residual blocks (reflection
pad 1, 3x3 conv, BN, ReLU, reflection pad 1, 3x3 conv, BN, + identity); one 3x3
stride-2 transposed conv per downsampling back up (BN, ReLU); reflection pad 3, 7x7
conv with bias -> 2 -> tanh. Default widths (64, 128, 256) and 9 blocks = 11.4 M
parameters ("over 10 million" in the paper). Xavier-uniform init.

Conditional DCGAN (the DCGAN report)
----------------------------
The paper only says "a 7-layer CNN: conv + ReLU + max-pooling + BN, some max-pools
replaced by strided convs". Our exact layers, with ``filters = (w1, w2, w3, w4)``
(default 64, 128, 256, 512) on a 64x64 (Y, noise) input:

1. 3x3 conv stride 1, w1, BN, ReLU, 2x2 max-pool        -> 32x32
2. 4x4 conv stride 2 (replaces a max-pool), w2, BN, ReLU -> 16x16
3. 3x3 conv stride 1, w3, BN, ReLU, 2x2 max-pool        -> 8x8
4. 3x3 conv stride 1, w4, BN, ReLU                      -> 8x8
5. 4x4 transposed conv stride 2, w3, BN, ReLU           -> 16x16
6. 4x4 transposed conv stride 2, w2, BN, ReLU           -> 32x32
7. 4x4 transposed conv stride 2, 2 channels, tanh       -> 64x64 (U, V)

"Advanced" (the DCGAN report §V-B): the input (Y, noise) is concatenated with the 7-layer
CNN's (U, V) output and one more 3x3 conv (bias, no norm) + tanh gives the (U, V)
output. Conv then BN then ReLU ordering (Radford et al.); N(0, 0.02) init.

Segmentation-aware U-Nets (Tarrés 2021 §4.3)
-----------------------------------------
``unet-seg-shared``: the U-Net with ``2 * n_classes`` tanh outputs (an ab pair per
class, class k at channels ``[2k, 2k+1]``). ``unet-seg-separate``: one encoder, two
decoders with the same structure and separate weights, both fed the encoder skips;
outputs ``[chroma [B,H,W,2] (tanh), seg_logits [B,H,W,n_classes] (linear)]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from colourise_tf.layers import ConvBlock, resolve_norm

__all__ = [
    "unet_generator",
    "unet_seg_separate_generator",
    "resnet_generator",
    "dcgan_generator",
]


def _common(init: str, ibn_ratio: float, bn_momentum: float, norm_epsilon: float, leaky_slope: float) -> dict[str, Any]:
    return dict(
        init=init, ibn_ratio=ibn_ratio, bn_momentum=bn_momentum, norm_epsilon=norm_epsilon, leaky_slope=leaky_slope
    )


def _unet_encoder(
    x, filters: Sequence[int], norm: str, first_norm: bool, spectral_norm: bool, ibn_levels: int, common: dict
) -> list:
    depth = len(filters)
    skips = []
    for i, f in enumerate(filters):
        level = i + 1
        block_norm = "none" if (i == 0 and not first_norm) else resolve_norm(norm, level, depth, ibn_levels)
        x = ConvBlock(
            f,
            4,
            2,
            padding="same",
            norm=block_norm,
            spectral_norm=spectral_norm,
            activation="leaky_relu",
            name=f"enc{level}",
            **common,
        )(x)
        skips.append(x)
    return skips


def _unet_decoder(
    skips: list,
    filters: Sequence[int],
    norm: str,
    spectral_norm: bool,
    dropout: float,
    dropout_blocks: int,
    ibn_levels: int,
    common: dict,
    prefix: str = "dec",
):
    depth = len(filters)
    x = skips[-1]
    for j, f in enumerate(reversed(list(filters[:-1]))):
        level = depth - (j + 1)
        x = ConvBlock(
            f,
            4,
            2,
            transpose=True,
            padding="same",
            norm=resolve_norm(norm, level, depth, ibn_levels),
            spectral_norm=spectral_norm,
            dropout=dropout if j < dropout_blocks else 0.0,
            activation="relu",
            name=f"{prefix}{j + 1}",
            **common,
        )(x)
        x = keras.layers.Concatenate(name=f"{prefix}{j + 1}_skip")([x, skips[-(j + 2)]])
    return x


def _head(x, channels: int, spectral_norm: bool, common: dict, name: str, activation: str):
    x = ConvBlock(
        channels,
        4,
        2,
        transpose=True,
        padding="same",
        norm="none",
        spectral_norm=spectral_norm,
        activation=None,
        use_bias=True,
        name=f"{name}_conv",
        **common,
    )(x)
    return keras.layers.Activation(activation, dtype="float32", name=name)(x)


def unet_generator(
    input_channels: int = 1,
    out_channels: int = 2,
    filters: Sequence[int] = (64, 128, 256, 512, 512, 512, 512),
    *,
    norm: str = "batch",
    first_norm: bool = False,
    spectral_norm: bool = False,
    dropout: float = 0.5,
    dropout_blocks: int = 3,
    init: str = "normal",
    ibn_levels: int = 0,
    ibn_ratio: float = 0.5,
    bn_momentum: float = 0.9,
    norm_epsilon: float = 1e-5,
    leaky_slope: float = 0.2,
    output_name: str = "chroma",
    name: str = "generator",
) -> keras.Model:
    """The U-Net generator (see the module docstring for the exact layout).

    Args:
        input_channels: ``C_in`` (1 + noise + 3 * mask).
        out_channels: 2 (ab / UV), or ``2 * n_classes`` for the shared seg decoder.
        filters: encoder widths ``f_1..f_D``; depth ``D = len(filters)``.
        norm: ``none | batch | instance | ibn`` (IBN split by depth, see layers.py).
        first_norm: normalise the first encoder block (Górriz et al. 2019: no).
        spectral_norm: SN on every conv including the output layer.
        dropout: rate in the first ``dropout_blocks`` decoder blocks.
        dropout_blocks: how many decoder blocks get dropout.
        init: kernel init scheme (``normal`` = N(0, 0.02)).
        ibn_levels: IBN depth ``S`` (0 = ceil(D / 2)).
        ibn_ratio: instance-normalised channel fraction in IBN layers.
        bn_momentum: batch-norm momentum.
        norm_epsilon: normalisation epsilon.
        leaky_slope: encoder LeakyReLU slope.
        output_name: name of the float32 tanh output layer.
        name: model name.

    Returns:
        ``keras.Model``: ``[B, H, W, input_channels] -> [B, H, W, out_channels]``.
    """
    common = _common(init, ibn_ratio, bn_momentum, norm_epsilon, leaky_slope)
    inputs = keras.Input((None, None, input_channels), name="generator_input")
    skips = _unet_encoder(inputs, filters, norm, first_norm, spectral_norm, ibn_levels, common)
    x = _unet_decoder(skips, filters, norm, spectral_norm, dropout, dropout_blocks, ibn_levels, common)
    outputs = _head(x, out_channels, spectral_norm, common, output_name, "tanh")
    return keras.Model(inputs, outputs, name=name)


def unet_seg_separate_generator(
    input_channels: int = 1,
    n_classes: int = 21,
    filters: Sequence[int] = (64, 128, 256, 512, 512, 512, 512),
    *,
    norm: str = "batch",
    first_norm: bool = False,
    spectral_norm: bool = False,
    dropout: float = 0.5,
    dropout_blocks: int = 3,
    init: str = "normal",
    ibn_levels: int = 0,
    ibn_ratio: float = 0.5,
    bn_momentum: float = 0.9,
    norm_epsilon: float = 1e-5,
    leaky_slope: float = 0.2,
    name: str = "generator",
) -> keras.Model:
    """Tarrés 2021 §4.3.2: shared encoder, a colour decoder and a segmentation decoder.

    Returns:
        ``keras.Model`` with outputs ``[chroma [B,H,W,2] tanh, seg_logits [B,H,W,n_classes]]``
        (both float32).
    """
    common = _common(init, ibn_ratio, bn_momentum, norm_epsilon, leaky_slope)
    inputs = keras.Input((None, None, input_channels), name="generator_input")
    skips = _unet_encoder(inputs, filters, norm, first_norm, spectral_norm, ibn_levels, common)
    colour = _unet_decoder(skips, filters, norm, spectral_norm, dropout, dropout_blocks, ibn_levels, common, "dec")
    seg = _unet_decoder(skips, filters, norm, spectral_norm, dropout, dropout_blocks, ibn_levels, common, "seg_dec")
    chroma = _head(colour, 2, spectral_norm, common, "chroma", "tanh")
    logits = _head(seg, n_classes, spectral_norm, common, "segmentation", "linear")
    return keras.Model(inputs, [chroma, logits], name=name)


def resnet_generator(
    input_channels: int = 1,
    out_channels: int = 2,
    filters: Sequence[int] = (64, 128, 256),
    *,
    blocks: int = 9,
    norm: str = "batch",
    first_norm: bool = True,
    spectral_norm: bool = False,
    init: str = "glorot_uniform",
    ibn_levels: int = 0,
    ibn_ratio: float = 0.5,
    bn_momentum: float = 0.9,
    norm_epsilon: float = 1e-5,
    leaky_slope: float = 0.2,
    name: str = "generator",
) -> keras.Model:
    """Ehrenberg §1.1 ResNet generator (see the module docstring).

    Args:
        filters: stem width, then one width per stride-2 downsampling.
        blocks: number of residual blocks at the lowest resolution.
        first_norm: BN after the c7s1 stem (pix2pix/CycleGAN and the paper: yes).
        Other arguments as :func:`unet_generator`.
    """
    common = _common(init, ibn_ratio, bn_momentum, norm_epsilon, leaky_slope)
    max_level = len(filters) - 1
    inputs = keras.Input((None, None, input_channels), name="generator_input")
    stem_norm = resolve_norm(norm, 0, max_level, ibn_levels) if first_norm else "none"
    x = ConvBlock(
        filters[0],
        7,
        1,
        padding=3,
        pad_mode="reflect",
        norm=stem_norm,
        spectral_norm=spectral_norm,
        activation="relu",
        name="stem",
        **common,
    )(inputs)
    for i, f in enumerate(filters[1:]):
        x = ConvBlock(
            f,
            3,
            2,
            padding=1,
            norm=resolve_norm(norm, i + 1, max_level, ibn_levels),
            spectral_norm=spectral_norm,
            activation="relu",
            name=f"down{i + 1}",
            **common,
        )(x)
    res_norm = resolve_norm(norm, max_level, max_level, ibn_levels)
    for b in range(blocks):
        y = ConvBlock(
            filters[-1],
            3,
            1,
            padding=1,
            pad_mode="reflect",
            norm=res_norm,
            spectral_norm=spectral_norm,
            activation="relu",
            name=f"res{b + 1}_a",
            **common,
        )(x)
        y = ConvBlock(
            filters[-1],
            3,
            1,
            padding=1,
            pad_mode="reflect",
            norm=res_norm,
            spectral_norm=spectral_norm,
            activation=None,
            name=f"res{b + 1}_b",
            **common,
        )(y)
        x = keras.layers.Add(name=f"res{b + 1}_add")([x, y])
    for i, f in enumerate(reversed(list(filters[:-1]))):
        level = max_level - (i + 1)
        x = ConvBlock(
            f,
            3,
            2,
            transpose=True,
            padding="same",
            norm=resolve_norm(norm, level, max_level, ibn_levels),
            spectral_norm=spectral_norm,
            activation="relu",
            name=f"up{i + 1}",
            **common,
        )(x)
    x = ConvBlock(
        out_channels,
        7,
        1,
        padding=3,
        pad_mode="reflect",
        norm="none",
        spectral_norm=spectral_norm,
        activation=None,
        use_bias=True,
        name="chroma_conv",
        **common,
    )(x)
    outputs = keras.layers.Activation("tanh", dtype="float32", name="chroma")(x)
    return keras.Model(inputs, outputs, name=name)


def dcgan_generator(
    input_channels: int = 2,
    out_channels: int = 2,
    filters: Sequence[int] = (64, 128, 256, 512),
    *,
    advanced: bool = False,
    norm: str = "batch",
    first_norm: bool = True,
    spectral_norm: bool = False,
    init: str = "normal",
    ibn_levels: int = 0,
    ibn_ratio: float = 0.5,
    bn_momentum: float = 0.9,
    norm_epsilon: float = 1e-5,
    leaky_slope: float = 0.2,
    name: str = "generator",
) -> keras.Model:
    """The conditional DCGAN generator of the DCGAN report (exact layer list in the module docstring).

    Args:
        input_channels: 2 for (Y, noise).
        filters: widths ``(w1, w2, w3, w4)`` of layers 1-4.
        advanced: the paper's "more advanced" variant (input concatenated with the CNN
            output, then one more conv).
        first_norm: BN after layer 1 (the paper: conv + ReLU + BN in every layer).
        Other arguments as :func:`unet_generator`.
    """
    if len(filters) != 4:
        raise ValueError(f"dcgan_generator needs 4 widths, got {filters}")
    common = _common(init, ibn_ratio, bn_momentum, norm_epsilon, leaky_slope)
    w1, w2, w3, w4 = filters
    max_level = 3

    def n(level: int) -> str:
        return resolve_norm(norm, level, max_level, ibn_levels)

    def block(x, f, k, s, level, name, transpose=False, block_norm=None):
        return ConvBlock(
            f,
            k,
            s,
            transpose=transpose,
            padding="same",
            norm=n(level) if block_norm is None else block_norm,
            spectral_norm=spectral_norm,
            activation="relu",
            name=name,
            **common,
        )(x)

    inputs = keras.Input((None, None, input_channels), name="generator_input")
    x = block(inputs, w1, 3, 1, 1, "layer1", block_norm=None if first_norm else "none")
    x = keras.layers.MaxPooling2D(2, name="layer1_pool")(x)
    x = block(x, w2, 4, 2, 2, "layer2")
    x = block(x, w3, 3, 1, 3, "layer3")
    x = keras.layers.MaxPooling2D(2, name="layer3_pool")(x)
    x = block(x, w4, 3, 1, 3, "layer4")
    x = block(x, w3, 4, 2, 2, "layer5", transpose=True)
    x = block(x, w2, 4, 2, 1, "layer6", transpose=True)
    x = ConvBlock(
        out_channels,
        4,
        2,
        transpose=True,
        padding="same",
        norm="none",
        spectral_norm=spectral_norm,
        activation=None,
        use_bias=True,
        name="layer7",
        **common,
    )(x)
    if not advanced:
        outputs = keras.layers.Activation("tanh", dtype="float32", name="chroma")(x)
        return keras.Model(inputs, outputs, name=name)
    x = keras.layers.Activation("tanh", dtype="float32", name="cnn_chroma")(x)
    x = keras.layers.Concatenate(name="concat_input")([inputs, x])
    x = ConvBlock(
        out_channels,
        3,
        1,
        padding="same",
        norm="none",
        spectral_norm=spectral_norm,
        activation=None,
        use_bias=True,
        name="refine",
        **common,
    )(x)
    outputs = keras.layers.Activation("tanh", dtype="float32", name="chroma")(x)
    return keras.Model(inputs, outputs, name=name)
