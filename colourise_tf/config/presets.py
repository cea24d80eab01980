"""The named presets: one registered function per system of the papers.

Each preset is a function returning an :class:`~colourise_tf.config.schema.ExperimentConfig`,
registered under its name with :func:`register_preset` (in the manner of the
tensorflow/models ``exp_factory`` registry)::

    @register_preset("my-preset")
    def my_preset() -> ExperimentConfig:
        return dataclasses.replace(get_preset("pix2pix"), description="...")

:func:`get_preset` builds (and caches) the config; :func:`list_presets` lists the names
in registration order. Pure Python, like the rest of :mod:`colourise_tf.config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .schema import (
    UNET_32,
    DataConfig,
    DiscriminatorConfig,
    ExperimentConfig,
    GeneratorConfig,
    LossConfig,
    ModelConfig,
    TrainConfig,
)

__all__ = ["register_preset", "list_presets", "get_preset"]

_FACTORIES: dict[str, Callable[[], ExperimentConfig]] = {}
_BUILT: dict[str, ExperimentConfig] = {}


def register_preset(name: str) -> Callable[[Callable[[], ExperimentConfig]], Callable[[], ExperimentConfig]]:
    """Decorator: registers a function returning the preset's config under ``name``
    (names are unique; the config's ``name`` is set to it)."""

    def register(factory: Callable[[], ExperimentConfig]) -> Callable[[], ExperimentConfig]:
        if name in _FACTORIES:
            raise ValueError(f"preset {name!r} is already registered")
        _FACTORIES[name] = factory
        return factory

    return register


def list_presets() -> list[str]:
    """Names of all registered presets, in registration order."""
    return list(_FACTORIES)


def get_preset(name: str) -> ExperimentConfig:
    """Returns the named preset.

    Raises:
        ValueError: unknown name; the message lists the valid names.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(_FACTORIES)}")
    if name not in _BUILT:
        cfg = _FACTORIES[name]()
        _BUILT[name] = cfg if cfg.name == name else dataclasses.replace(cfg, name=name)
    return _BUILT[name]


#: Górriz et al. (2019, §IV-A) and Tarrés 2021 (§5.1): train on the 50,000 ILSVRC-2012
#: validation images, test on 10 images per class of ``train`` (``colourise_tf.data``'s
#: gorriz-* splits).
IMAGENET_GORRIZ = DataConfig(dataset="imagenet2012", split="gorriz-train", eval_split="gorriz-test")
PIX2PIX_LOSS = LossConfig(adversarial="non_saturating", reconstruction_weight=100.0)

_GORRIZ_LOSS_NOTE = (
    " Adversarial loss: non-saturating log loss, as the paper writes (eq. 4-5); "
    "Gorriz's own Keras code (bbc/ColorGAN) trains with a least-squares (MSE) "
    "adversarial loss, which `loss.adversarial=least_squares` reproduces. L1 with lambda=100."
)


def _gorriz(name: str, norm: str, sn: bool, scales: int, row: str) -> ExperimentConfig:
    """A row of Górriz et al. 2019 Table I: U-Net + 70x70 PatchGAN with ``norm``."""
    return ExperimentConfig(
        name=name,
        model=ModelConfig(
            generator=GeneratorConfig(kind="unet", norm=norm, spectral_norm=sn),
            discriminator=DiscriminatorConfig(kind="patchgan", norm=norm, spectral_norm=sn),
            image_size=256,
            colour_space="lab",
            num_scales=scales,
        ),
        loss=PIX2PIX_LOSS,
        data=IMAGENET_GORRIZ,
        description=(
            f"Górriz et al. 2019 Table I row '{row}': U-Net e64:e128:e256:e512:e512:e512:e512 - "
            f"d512:d512:d512:d256:d128:d64 + 70x70 PatchGAN, {norm} normalisation"
            + (", spectral norm in G and D (Górriz et al. 2019 SIV-B / SIII-C)" if sn else "")
            + (f", {scales} discriminator scales (x1, x2, x4; eq. 6)" if scales > 1 else "")
            + ", 256x256 CIE Lab, ILSVRC-2012."
            + _GORRIZ_LOSS_NOTE
        ),
    )


@register_preset("unet-l1")
def unet_l1() -> ExperimentConfig:
    return ExperimentConfig(
        name="unet-l1",
        model=ModelConfig(
            generator=GeneratorConfig(kind="unet"),
            discriminator=DiscriminatorConfig(kind="none"),
            image_size=256,
            colour_space="lab",
        ),
        loss=LossConfig(adversarial="none", reconstruction_weight=1.0),
        data=IMAGENET_GORRIZ,
        description=(
            "Tarrés 2021 S4.1.1: the pix2pix U-Net (BN, 256x256 Lab) trained with L1 only; "
            "no discriminator. Desaturated by design (regression to the mean)."
        ),
    )


@register_preset("pix2pix")
def pix2pix() -> ExperimentConfig:
    return ExperimentConfig(
        name="pix2pix",
        model=ModelConfig(
            generator=GeneratorConfig(kind="unet"),
            discriminator=DiscriminatorConfig(kind="patchgan"),
            image_size=256,
            colour_space="lab",
        ),
        loss=PIX2PIX_LOSS,
        data=IMAGENET_GORRIZ,
        description=(
            "Górriz et al. 2019 SIV-B / Tarrés 2021 S4.1.2: U-Net (BN, dropout 0.5 in the first 3 decoder "
            "blocks) + 70x70 PatchGAN (BN), non-saturating GAN loss + 100 * L1, 256x256 Lab, "
            "N(0, 0.02) init, Adam 2e-4 / 0.5."
        ),
    )


@register_preset("gorriz-in")
def gorriz_in() -> ExperimentConfig:
    return _gorriz("gorriz-in", "instance", False, 1, "IN")


@register_preset("gorriz-bn-sn")
def gorriz_bn_sn() -> ExperimentConfig:
    return _gorriz("gorriz-bn-sn", "batch", True, 1, "BN + SN")


@register_preset("gorriz-in-sn")
def gorriz_in_sn() -> ExperimentConfig:
    return _gorriz("gorriz-in-sn", "instance", True, 1, "IN + SN")


@register_preset("gorriz-bn-sn-md")
def gorriz_bn_sn_md() -> ExperimentConfig:
    return _gorriz("gorriz-bn-sn-md", "batch", True, 3, "BN + SN + MD")


@register_preset("gorriz-ibn-sn-md")
def gorriz_ibn_sn_md() -> ExperimentConfig:
    return _gorriz("gorriz-ibn-sn-md", "ibn", True, 3, "IBN + SN + MD")


@register_preset("gorriz-bn")
def gorriz_bn() -> ExperimentConfig:
    bn = _gorriz("gorriz-bn", "batch", False, 1, "BN (baseline)")
    return dataclasses.replace(bn, description=bn.description + " Architecturally identical to the `pix2pix` preset.")


def _tarres_feature(name: str, backbone: str, layer: str, description: str) -> ExperimentConfig:
    base = get_preset("gorriz-ibn-sn-md")
    return dataclasses.replace(
        base,
        name=name,
        loss=dataclasses.replace(base.loss, feature_weight=1e-5, feature_backbone=backbone, feature_layer=layer),
        description=description + _GORRIZ_LOSS_NOTE,
    )


@register_preset("tarres-vgg16")
def tarres_vgg16() -> ExperimentConfig:
    return _tarres_feature(
        "tarres-vgg16",
        "vgg16",
        "block3_conv3",
        "Tarrés 2021 S4.2 / S5.1: the Gorriz model (IBN + SN + MD, the BBC baseline) plus a "
        "feature-reconstruction loss on ImageNet VGG16 `block3_conv3`, weight 1e-5; "
        "256x256 Lab, ILSVRC-2012. Adversarial loss as the gorriz-* presets.",
    )


@register_preset("tarres-resnet50")
def tarres_resnet50() -> ExperimentConfig:
    return _tarres_feature(
        "tarres-resnet50",
        "resnet50",
        "conv2_block3_out",
        "Tarrés 2021 S4.2 / Table 2 'ResNet' row: as tarres-vgg16 with an ImageNet ResNet50 "
        "backbone. The paper does not name the layer; we use `conv2_block3_out` (stride 4, "
        "256 channels: the same resolution and width as VGG16 block3_conv3).",
    )


_SEG_NOTE = (
    " Pascal VOC (21 classes incl. background), 256x256 Lab; the per-class L1 is the "
    "paper's loss. No adversarial term: the paper's reported result (Table 5) is without one "
    "(its GAN variant collapsed). Pascal VOC segmentation is not in TFDS: point "
    "`data.dataset`/`data.data_dir` at a source with per-pixel labels and set "
    "`data.segmentation_key`."
)


def _tarres_seg(name: str, kind: str, train: TrainConfig, description: str) -> ExperimentConfig:
    return ExperimentConfig(
        name=name,
        model=ModelConfig(
            generator=GeneratorConfig(kind=kind),
            discriminator=DiscriminatorConfig(kind="none"),
            image_size=256,
            colour_space="lab",
            n_classes=21,
        ),
        loss=LossConfig(adversarial="none", reconstruction_weight=1.0, segmentation_weight=1.0),
        data=DataConfig(dataset="samples"),
        train=train,
        description=description + _SEG_NOTE,
    )


@register_preset("tarres-seg-shared")
def tarres_seg_shared() -> ExperimentConfig:
    return _tarres_seg(
        "tarres-seg-shared",
        "unet-seg-shared",
        TrainConfig(),
        "Tarrés 2021 S4.3.1: U-Net with a shared decoder whose last layer outputs 2 * n_classes "
        "chroma channels (an ab pair per class).",
    )


@register_preset("tarres-seg-separate")
def tarres_seg_separate() -> ExperimentConfig:
    return _tarres_seg(
        "tarres-seg-separate",
        "unet-seg-separate",
        TrainConfig(seg_pretrain_steps=10_000),
        "Tarrés 2021 S4.3.2: shared U-Net encoder, two decoders: a colour head (2 ab channels, "
        "tanh) and a segmentation head (n_classes logits). The segmentation term is the "
        "trainer's per-pixel cross-entropy. Two stages as the paper describes: segmentation "
        "alone first (train.seg_pretrain_steps=10000, 10% of the schedule: the paper says "
        "'once it achieved acceptable results'), then encoder + colour decoder on both "
        "losses with the segmentation decoder frozen.",
    )


_DCGAN_DESC = (
    "64x64 YUV (BT.601), grey + N(0, 1) noise channel in, U and V out (tanh); 4-conv "
    "discriminator with a classifier (one logit per image); vanilla (non-saturating) GAN "
    "loss plus the paper's image-space L1 term (S VI-B; weight 100 as in pix2pix, the "
    "paper gives none; `loss.reconstruction_weight=0` is the paper's Fig. 3 baseline). "
    "The Flickr sky set is not public: train on any sky folder via `data.dataset`. "
    "Y-channel sharpening is a post-process (inference), not part of the model. No data "
    "augmentation (S IV: 'No pre-training or data augmentation was used'): data.augment=false."
)


def _dcgan(name: str, kind: str, description: str) -> ExperimentConfig:
    return ExperimentConfig(
        name=name,
        model=ModelConfig(
            generator=GeneratorConfig(
                kind=kind, filters=(64, 128, 256, 512), norm="batch", first_norm=True, dropout=0.0
            ),
            discriminator=DiscriminatorConfig(kind="dcgan", filters=(64, 128, 256, 512), norm="batch"),
            image_size=64,
            colour_space="yuv",
            noise_channel=True,
        ),
        loss=PIX2PIX_LOSS,
        data=DataConfig(dataset="samples", augment=False),
        description=description + _DCGAN_DESC,
    )


@register_preset("dcgan-sky")
def dcgan_sky() -> ExperimentConfig:
    return _dcgan("dcgan-sky", "dcgan", "The DCGAN report S V-A: conditional DCGAN baseline. ")


@register_preset("dcgan-sky-advanced")
def dcgan_sky_advanced() -> ExperimentConfig:
    return _dcgan(
        "dcgan-sky-advanced",
        "dcgan-advanced",
        "The DCGAN report S V-B: the 'more advanced' DCGAN: the input is concatenated with the "
        "CNN's output and one more conv makes the colour. ",
    )


@register_preset("partial-mask")
def partial_mask() -> ExperimentConfig:
    return ExperimentConfig(
        name="partial-mask",
        model=ModelConfig(
            generator=GeneratorConfig(kind="unet"),
            discriminator=DiscriminatorConfig(kind="patchgan"),
            image_size=256,
            colour_space="lab",
            mask_channel=True,
        ),
        loss=LossConfig(adversarial="non_saturating", reconstruction_weight=100.0, mask_weight=100.0),
        data=DataConfig(dataset="oxford_flowers102"),
        description=(
            "The IMPA project: spatial control. G gets L + binary mask + hint ab (hints = ab inside the "
            "mask); D gets concat(L, ab, mask). Squared-L2 mask loss. The paper's 11-layer U-Net "
            "and discriminator are not specified further, so we use the U-Net of Górriz et al. 2019 and the "
            "70x70 PatchGAN at 256x256 Lab; non-saturating GAN + 100 * L1 (pix2pix); the paper "
            "gives no mask-loss weight, we use 100 (same order as the L1 term). The paper's data: "
            "17-category flowers; TFDS offers oxford_flowers102. With loss.mask_target=partial "
            "G gets only the mask and learns the paper's stated target: colour inside the mask, "
            "grey outside."
        ),
    )


@register_preset("resnet-patchgan")
def resnet_patchgan() -> ExperimentConfig:
    return ExperimentConfig(
        name="resnet-patchgan",
        model=ModelConfig(
            generator=GeneratorConfig(
                kind="resnet",
                filters=(64, 128, 256),
                norm="batch",
                first_norm=True,
                init="glorot_uniform",
                resnet_blocks=9,
            ),
            discriminator=DiscriminatorConfig(
                kind="patchgan", norm="none", spectral_norm=True, init="glorot_uniform", tanh_head=True
            ),
            image_size=256,
            colour_space="lab",
        ),
        loss=PIX2PIX_LOSS,
        data=DataConfig(dataset="places365_small"),
        description=(
            "Ehrenberg S1.1: ResNet generator (c7s1-64, two stride-2 downsamplings, 9 residual "
            "blocks, two upsamplings, 7x7 conv + tanh; BN + ReLU; Xavier-uniform init) + 70x70 "
            "PatchGAN with spectral norm and LeakyReLU(0.2), tanh head (returned as the logit "
            "2z); 256x256 Lab, Places365. pix2pix loss (vanilla GAN + 100 * L1) as in the "
            "repository the paper builds on."
        ),
    )


_PIXEL_DESC = (
    "U-Net with 4 stride-2 4x4 conv downsamplings (BN + LeakyReLU 0.2) and 4 transposed-conv "
    "upsamplings (BN + ReLU), tanh ab output; 1x1 PixelGAN on concat(L, ab): first layer no "
    "norm + LeakyReLU, middle three {mid} + LeakyReLU, last tanh (returned as the logit 2z); "
    "CIFAR-10 32x32 Lab; vanilla GAN + 100 * L1 (pix2pix weighting; the paper gives none). "
    "The paper resizes the 32x32 images to 35x35 before the U-Net; 35 is not a multiple of "
    "the 4 stride-2 levels' 16, so we train at 32x32 (model.image_size=48 is the nearest "
    "size above 35 the U-Net accepts)."
)


def _pixelgan(name: str, disc_norm: str, spectral_norm: bool, description: str) -> ExperimentConfig:
    return ExperimentConfig(
        name=name,
        model=ModelConfig(
            generator=GeneratorConfig(kind="unet", filters=UNET_32, norm="batch", first_norm=True, dropout=0.0),
            discriminator=DiscriminatorConfig(
                kind="pixelgan",
                filters=(64, 128, 256, 512),
                norm=disc_norm,
                spectral_norm=spectral_norm,
                tanh_head=True,
            ),
            image_size=32,
            colour_space="lab",
        ),
        loss=PIX2PIX_LOSS,
        data=DataConfig(dataset="cifar10"),
        description=description,
    )


@register_preset("unet-pixelgan-sn")
def unet_pixelgan_sn() -> ExperimentConfig:
    return _pixelgan("unet-pixelgan-sn", "none", True, "Ehrenberg S1.2: " + _PIXEL_DESC.format(mid="spectral norm"))


@register_preset("unet-pixelgan-bn")
def unet_pixelgan_bn() -> ExperimentConfig:
    return _pixelgan("unet-pixelgan-bn", "batch", False, "Ehrenberg S1.3: " + _PIXEL_DESC.format(mid="batch norm"))


@register_preset("tiny")
def tiny() -> ExperimentConfig:
    return ExperimentConfig(
        name="tiny",
        model=ModelConfig(
            generator=GeneratorConfig(kind="unet", filters=(8, 16), dropout=0.0),
            discriminator=DiscriminatorConfig(kind="patchgan", filters=(8, 16)),
            image_size=32,
            colour_space="lab",
        ),
        loss=PIX2PIX_LOSS,
        data=DataConfig(dataset="samples", batch_size=2),
        train=TrainConfig(steps=20, checkpoint_every=10, log_every=5, image_every=10),
        description=(
            "Not from the papers: a ~7.6k-parameter pix2pix (2-level U-Net 8:16, PatchGAN 8:16, BN) "
            "at 32x32 Lab for tests and smoke runs."
        ),
    )
