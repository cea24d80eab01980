"""Model factory: ``ModelConfig`` / preset -> (generator, discriminator).

    G, D = build_preset("gorriz-ibn-sn-md")                      # one call
    G, D = build_preset("pix2pix", ["model.generator.filters=8,16,16"])  # with overrides
    G = build_generator(cfg.model); D = build_discriminator(cfg.model)

Call conventions (the training and export code rely on them):

* generator: functional ``keras.Model`` named ``"generator"``, ONE float32 input
  ``[B, H, W, C_in]`` with channels in this order: L in [-1, 1]; noise (if
  ``noise_channel``); mask then 2 hint chroma channels in [-1, 1] (if
  ``mask_channel``). Output: tanh chroma ``[B, H, W, 2]`` float32;
  ``unet-seg-shared``: ``[B, H, W, 2 * n_classes]``; ``unet-seg-separate``: the list
  ``[chroma [B,H,W,2], seg_logits [B,H,W,n_classes]]``. H and W are ``None``.
* discriminator: ``keras.Model`` named ``"discriminator"``, ONE input
  ``[B, H, W, C_d]`` = concat(L, chroma[, mask]); output ALWAYS a list of float32 logit
  maps, one per scale (DCGAN: ``[[B, 1]]``, fixed ``image_size``).

Initialisers: ``normal`` = N(0, 0.02) kernels, N(1, 0.02) norm scales (pix2pix, DCGAN,
Gorriz); ``glorot_uniform`` (Xavier-uniform) for the Ehrenberg ResNet + PatchGAN.
Importing this module registers all custom layers, so ``keras.saving.load_model``
reads saved models without ``custom_objects``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from colourise_tf import discriminators as D
from colourise_tf import generators as G
from colourise_tf import inference
from colourise_tf.config import (
    DiscriminatorConfig,
    ExperimentConfig,
    GeneratorConfig,
    ModelConfig,
    apply_overrides,
    get_preset,
)

__all__ = [
    "generator_input_channels",
    "discriminator_input_channels",
    "generator_output_channels",
    "build_generator",
    "build_discriminator",
    "build_models",
    "build_preset",
    "generator_size_multiple",
    "check_image_size",
]


def generator_input_channels(model_cfg: ModelConfig) -> int:
    """``C_in``: 1 (L) + 1 (noise, the DCGAN report) + 3 (mask + 2 hint chroma, the IMPA project);
    :attr:`colourise_tf.inference.ModelSpec.input_channels` owns the formula."""
    return inference.ModelSpec.from_model_config(model_cfg).input_channels


def discriminator_input_channels(model_cfg: ModelConfig) -> int:
    """``C_d``: L + 2 chroma + 1 mask channel when the preset has one."""
    return 3 + int(model_cfg.mask_channel)


def generator_output_channels(model_cfg: ModelConfig) -> int:
    """Chroma channels of the (first) generator output."""
    return 2 * model_cfg.n_classes if model_cfg.generator.kind == "unet-seg-shared" else 2


def _shared(m: ModelConfig, net: GeneratorConfig | DiscriminatorConfig) -> dict:
    """Builder arguments from the network's own section and the model's shared fields."""
    return dict(
        norm=net.norm,
        spectral_norm=net.spectral_norm,
        init=net.init,
        ibn_levels=m.ibn_levels,
        ibn_ratio=m.ibn_ratio,
        bn_momentum=m.bn_momentum,
        norm_epsilon=m.norm_epsilon,
        leaky_slope=m.leaky_slope,
    )


def build_generator(model_cfg: ModelConfig) -> keras.Model:
    """Builds the generator described by ``model_cfg`` (see the module docstring)."""
    m = model_cfg
    c_in = generator_input_channels(m)
    kw = _shared(m, m.generator)
    filters = tuple(int(f) for f in m.generator.filters)
    if m.generator.kind in ("unet", "unet-seg-shared"):
        return G.unet_generator(
            c_in,
            generator_output_channels(m),
            filters,
            first_norm=m.generator.first_norm,
            dropout=m.generator.dropout,
            dropout_blocks=m.generator.dropout_blocks,
            **kw,
        )
    if m.generator.kind == "unet-seg-separate":
        return G.unet_seg_separate_generator(
            c_in,
            m.n_classes,
            filters,
            first_norm=m.generator.first_norm,
            dropout=m.generator.dropout,
            dropout_blocks=m.generator.dropout_blocks,
            **kw,
        )
    if m.generator.kind == "resnet":
        return G.resnet_generator(
            c_in, 2, filters, blocks=m.generator.resnet_blocks, first_norm=m.generator.first_norm, **kw
        )
    if m.generator.kind in ("dcgan", "dcgan-advanced"):
        return G.dcgan_generator(
            c_in, 2, filters, advanced=m.generator.kind == "dcgan-advanced", first_norm=m.generator.first_norm, **kw
        )
    raise ValueError(f"unknown generator {m.generator.kind!r}")


def build_discriminator(model_cfg: ModelConfig) -> keras.Model | None:
    """Builds the (multi-scale) discriminator; ``None`` when ``discriminator == "none"``."""
    m = model_cfg
    if m.discriminator.kind == "none":
        return None
    c_d = discriminator_input_channels(m)
    kw = _shared(m, m.discriminator)
    filters = tuple(int(f) for f in m.discriminator.filters)
    if m.discriminator.kind == "patchgan":

        def make(s: int) -> keras.Model:
            return D.patchgan_discriminator(
                c_d, filters, tanh_head=m.discriminator.tanh_head, name=f"patchgan_x{2**s}", **kw
            )

        shape = (None, None, c_d)
    elif m.discriminator.kind == "pixelgan":

        def make(s: int) -> keras.Model:
            return D.pixelgan_discriminator(
                c_d, filters, tanh_head=m.discriminator.tanh_head, name=f"pixelgan_x{2**s}", **kw
            )

        shape = (None, None, c_d)
    elif m.discriminator.kind == "dcgan":

        def make(s: int) -> keras.Model:
            return D.dcgan_discriminator(c_d, m.image_size, filters, name="dcgan_x1", **kw)

        shape = (m.image_size, m.image_size, c_d)
    else:
        raise ValueError(f"unknown discriminator {m.discriminator.kind!r}")
    return D.multiscale_discriminator(make, m.num_scales, shape, name="discriminator")


def generator_size_multiple(model_cfg: ModelConfig) -> int:
    """The number the generator's input height and width must be a multiple of.

    U-Net: ``2 ** len(gen_filters)`` (one stride-2 level per width, and each decoder
    output is concatenated with the encoder output of the same size); ResNet:
    ``2 ** (len(gen_filters) - 1)`` (stride-2 convs after the stem); DCGAN: 8 (two
    max-pools and a stride-2 conv down, three stride-2 transposed convs up).
    """
    m = model_cfg
    if m.generator.kind.startswith("unet"):
        return 2 ** len(m.generator.filters)
    if m.generator.kind == "resnet":
        return 2 ** (len(m.generator.filters) - 1)
    if m.generator.kind.startswith("dcgan"):
        return 8
    raise ValueError(f"unknown generator {m.generator.kind!r}")


def check_image_size(model_cfg: ModelConfig) -> None:
    """Raises ``ValueError`` naming ``model.image_size`` if the networks cannot run at it.

    The generator needs a multiple of :func:`generator_size_multiple`; a PatchGAN
    needs at least :func:`discriminators.patchgan_min_input_size` pixels at its
    coarsest scale (the input halved ``num_scales - 1`` times). Without this check
    the failure is a shape error deep inside Keras (a ``Concatenate`` of mismatched
    U-Net levels) or a PatchGAN error naming an internal layer.
    """
    m = model_cfg
    size = int(m.image_size)
    mult = generator_size_multiple(m)
    if size % mult:
        lower, upper = size // mult * mult, (size // mult + 1) * mult
        choices = f"{lower} or {upper}" if lower else f"{upper}"
        raise ValueError(
            f"model.image_size={size} does not suit the {m.generator.kind} generator with "
            f"{len(m.generator.filters)} widths: it needs a multiple of {mult} (e.g. {choices})"
        )
    if m.discriminator.kind == "patchgan":
        coarsest = size // 2 ** (m.num_scales - 1)
        need = D.patchgan_min_input_size(len(m.discriminator.filters))
        if coarsest < need:
            raise ValueError(
                f"model.image_size={size} is too small for the {len(m.discriminator.filters)}-width PatchGAN at "
                f"{m.num_scales} scale(s): its coarsest scale would see {coarsest}x{coarsest} pixels, "
                f"it needs at least {need}x{need} (model.image_size >= {need * 2 ** (m.num_scales - 1)})"
            )


def build_models(cfg: ExperimentConfig) -> tuple[keras.Model, keras.Model | None]:
    """``(generator, discriminator or None)`` for an experiment config.

    Checks first that both can run at ``cfg.model.image_size`` (:func:`check_image_size`).
    """
    check_image_size(cfg.model)
    return build_generator(cfg.model), build_discriminator(cfg.model)


def build_preset(name: str, overrides: Sequence[str] = ()) -> tuple[keras.Model, keras.Model | None]:
    """``build_models(apply_overrides(get_preset(name), overrides))`` in one call."""
    return build_models(apply_overrides(get_preset(name), overrides))
