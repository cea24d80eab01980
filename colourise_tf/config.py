"""Experiment configuration: frozen dataclasses and the named preset registry.

An experiment is one :class:`ExperimentConfig` made of five frozen sections
(:class:`ModelConfig`, :class:`LossConfig`, :class:`DataConfig`, :class:`OptimConfig`,
:class:`TrainConfig`). Every system described in the papers is registered as a named
preset (see :func:`list_presets`); a run starts from a preset and applies
``section.field=value`` overrides::

    cfg = apply_overrides(get_preset("gorriz-ibn-sn-md"), ["model.num_scales=1", "train.steps=10"])
    save_config(cfg, "runs/x/config.json")

This module is pure Python (dataclasses + JSON): it imports nothing from the rest of
``colourise_tf`` and nothing from TensorFlow, so configs can be read anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .fileio import atomic_writer, makedirs, parent, read_text

__all__ = [
    "GENERATORS",
    "DISCRIMINATORS",
    "NORMS",
    "ModelConfig",
    "LossConfig",
    "DataConfig",
    "OptimConfig",
    "TrainConfig",
    "ExperimentConfig",
    "list_presets",
    "get_preset",
    "register_preset",
    "apply_overrides",
    "to_dict",
    "from_dict",
    "save_config",
    "load_config",
]

GENERATORS = ("unet", "resnet", "dcgan", "dcgan-advanced", "unet-seg-shared", "unet-seg-separate")
DISCRIMINATORS = ("patchgan", "pixelgan", "dcgan", "none")
NORMS = ("none", "batch", "instance", "ibn")
COLOUR_SPACES = ("lab", "yuv")
ADVERSARIAL = ("non_saturating", "least_squares", "hinge", "none")
RECONSTRUCTION = ("l1", "smooth_l1")
MASK_TARGETS = ("hints", "partial")
_FLOAT32_MAX = 3.4028234663852886e38  # losses and learning rates are float32 on the device
FEATURE_BACKBONES = ("vgg16", "resnet50")
STRATEGIES = ("default", "onedevice", "mirrored", "multiworker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
CPU_KERNEL_MODES = ("auto", "on", "off")
#: How a multi-replica run feeds its replicas (colourise_tf/training/loop.py): per_replica =
#: strategy.distribute_datasets_from_function (each worker reads its own files, batches
#: of the per-replica size, prefetched to the devices); host = one global batch per step
#: on the host, split over the replicas (iterator saved in checkpoints); auto =
#: per_replica when the global batch divides evenly over the replicas, else host.
INPUT_DISTRIBUTIONS = ("auto", "per_replica", "host")

# Górriz et al. 2019 §IV-B: e64:e128:e256:e512:e512:e512:e512 (the decoder mirrors it).
UNET_256 = (64, 128, 256, 512, 512, 512, 512)
# Ehrenberg §1.2: 4 down / 4 up on CIFAR-10 32x32.
UNET_32 = (64, 128, 256, 512)
PATCHGAN_70 = (64, 128, 256, 512)


def _check(value, allowed: Sequence, what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what}={value!r} is not one of {list(allowed)}")


def _coerce_sequences(obj) -> None:
    """Turns list values of tuple-typed fields into tuples (JSON gives lists)."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, list):
            object.__setattr__(obj, f.name, tuple(v))


@dataclass(frozen=True)
class ModelConfig:
    """Generator / discriminator architecture.

    Attributes:
        generator: ``unet`` (Górriz et al. 2019 §IV-B, Ehrenberg §1.2), ``resnet`` (Ehrenberg §1.1),
            ``dcgan`` / ``dcgan-advanced`` (the DCGAN report), ``unet-seg-shared`` /
            ``unet-seg-separate`` (Tarrés 2021 §4.3).
        discriminator: ``patchgan`` (70x70 for 4 widths), ``pixelgan`` (1x1, Ehrenberg),
            ``dcgan`` (one logit per image, the DCGAN report) or ``none``.
        image_size: native (training) resolution in pixels, square.
        colour_space: ``lab`` (L + ab) or ``yuv`` (Y + UV, the DCGAN report).
        num_scales: number of discriminator copies on x1, x2, x4... average-pooled inputs.
        noise_channel: the DCGAN report: an extra N(0, 1) input channel for G.
        mask_channel: the IMPA project: G gets a binary mask and the 2 hint chroma channels; D
            gets the mask as an extra channel.
        n_classes: number of segmentation classes (21 for Pascal VOC); 0 otherwise.
        gen_filters: generator widths. U-Net: encoder widths, one per stride-2 level
            (depth = len); the decoder widths are ``reversed(gen_filters[:-1])`` and a
            last stride-2 transposed conv makes the output. ResNet: stem width then one
            width per stride-2 downsampling (residual blocks use the last). DCGAN: the
            widths of layers 1-4 (layers 5-6 mirror widths 3 and 2).
        gen_norm: ``none`` | ``batch`` | ``instance`` | ``ibn`` for the generator.
        gen_first_norm: normalise the first (input) layer too. Górriz et al. 2019 says no
            ("to avoid sample oscillation"); Ehrenberg §1.2 puts BN after every conv.
        gen_spectral_norm: spectral normalisation on every generator conv (Górriz et al. 2019
            §IV-B puts it in the U-Net blocks).
        gen_dropout: dropout rate in the first ``gen_dropout_blocks`` decoder blocks.
        gen_dropout_blocks: pix2pix uses 3.
        gen_init: ``normal`` = N(0, 0.02) kernels and N(1, 0.02) norm scales (pix2pix,
            DCGAN) or any Keras initializer name, e.g. ``glorot_uniform`` (Ehrenberg §1.1;
            norm scales then start at 1).
        resnet_blocks: residual blocks of the ResNet generator (9 as in pix2pix/CycleGAN).
        disc_filters: discriminator widths. PatchGAN: all but the last are stride-2 4x4
            convs, the last a stride-1 4x4 conv, then a stride-1 4x4 conv to 1 logit
            (``(64, 128, 256, 512)`` = 70x70). PixelGAN: widths of the four hidden 1x1
            convs. DCGAN: widths of the four stride-2 convs.
        disc_norm: normalisation of every discriminator layer except the first.
        disc_spectral_norm: spectral normalisation on every discriminator conv/dense.
        disc_init: like ``gen_init``.
        disc_tanh_head: Ehrenberg: the discriminator ends in tanh. We return the
            equivalent logit ``2 z`` (see :mod:`colourise_tf.discriminators`).
        ibn_levels: IBN uses instance+batch norm in layers whose output is at most
            ``ibn_levels`` stride-2 levels below the input resolution, batch norm
            deeper; 0 = half the network's depth, rounded up. See
            :mod:`colourise_tf.layers`.
        ibn_ratio: fraction of channels instance-normalised in an IBN layer.
        leaky_slope: LeakyReLU negative slope (0.2 throughout the papers).
        bn_momentum: Keras BatchNormalization momentum (0.9 = PyTorch's 0.1).
        norm_epsilon: epsilon of all normalisation layers (PyTorch's 1e-5).
    """

    generator: str = "unet"
    discriminator: str = "patchgan"
    image_size: int = 256
    colour_space: str = "lab"
    num_scales: int = 1
    noise_channel: bool = False
    mask_channel: bool = False
    n_classes: int = 0
    gen_filters: tuple[int, ...] = UNET_256
    gen_norm: str = "batch"
    gen_first_norm: bool = False
    gen_spectral_norm: bool = False
    gen_dropout: float = 0.5
    gen_dropout_blocks: int = 3
    gen_init: str = "normal"
    resnet_blocks: int = 9
    disc_filters: tuple[int, ...] = PATCHGAN_70
    disc_norm: str = "batch"
    disc_spectral_norm: bool = False
    disc_init: str = "normal"
    disc_tanh_head: bool = False
    ibn_levels: int = 0
    ibn_ratio: float = 0.5
    leaky_slope: float = 0.2
    bn_momentum: float = 0.9
    norm_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        _coerce_sequences(self)
        _check(self.generator, GENERATORS, "model.generator")
        _check(self.discriminator, DISCRIMINATORS, "model.discriminator")
        _check(self.colour_space, COLOUR_SPACES, "model.colour_space")
        _check(self.gen_norm, NORMS, "model.gen_norm")
        _check(self.disc_norm, NORMS, "model.disc_norm")
        if self.image_size < 1:
            raise ValueError(f"model.image_size must be positive, got {self.image_size}")
        if self.num_scales < 1:
            raise ValueError(f"model.num_scales must be >= 1, got {self.num_scales}")
        if not 0.0 <= self.leaky_slope < 1.0:
            raise ValueError(f"model.leaky_slope must be in [0, 1), got {self.leaky_slope}")
        if not self.gen_filters or any(int(f) < 1 for f in self.gen_filters):
            raise ValueError(f"model.gen_filters must be positive widths, got {self.gen_filters}")
        if not self.disc_filters or any(int(f) < 1 for f in self.disc_filters):
            raise ValueError(f"model.disc_filters must be positive widths, got {self.disc_filters}")
        if self.generator.startswith("unet-seg") and self.n_classes < 1:
            raise ValueError(f"model.generator={self.generator!r} needs model.n_classes >= 1")
        if self.generator == "resnet" and len(self.gen_filters) < 1:
            raise ValueError("model.gen_filters for resnet needs at least the stem width")
        if self.generator.startswith("dcgan") and len(self.gen_filters) != 4:
            raise ValueError(f"model.gen_filters for {self.generator} needs 4 widths, got {self.gen_filters}")
        if self.discriminator == "dcgan":
            if self.num_scales != 1:
                raise ValueError("model.discriminator='dcgan' has one logit per image: use model.num_scales=1")
            if len(self.disc_filters) != 4:
                raise ValueError(f"model.disc_filters for dcgan needs 4 widths, got {self.disc_filters}")
        if self.discriminator == "pixelgan" and len(self.disc_filters) != 4:
            raise ValueError(f"model.disc_filters for pixelgan needs 4 widths, got {self.disc_filters}")
        if self.discriminator == "patchgan" and len(self.disc_filters) < 2:
            raise ValueError(f"model.disc_filters for patchgan needs >= 2 widths, got {self.disc_filters}")
        if not 0.0 <= self.gen_dropout < 1.0:
            raise ValueError(f"model.gen_dropout must be in [0, 1), got {self.gen_dropout}")
        if not 0.0 < self.ibn_ratio < 1.0:
            raise ValueError(f"model.ibn_ratio must be in (0, 1), got {self.ibn_ratio}")
        if self.ibn_levels < 0:
            raise ValueError(f"model.ibn_levels must be >= 0, got {self.ibn_levels}")


@dataclass(frozen=True)
class LossConfig:
    """Loss terms and weights (the loss functions live in ``colourise_tf.losses``)."""

    adversarial: str = "non_saturating"
    adversarial_weight: float = 1.0
    reconstruction: str = "l1"
    reconstruction_weight: float = 100.0
    # Threshold of reconstruction=smooth_l1 (PyTorch's SmoothL1Loss beta: quadratic 0.5 e^2 /
    # delta below it, |e| - delta / 2 above), on the network's chroma scale (ab / 110 for
    # Lab): 1.0 is quadratic up to 110 Lab units (~half MSE in practice); 1/110 switches
    # at one Lab unit and is then close to L1.
    smooth_l1_delta: float = 1.0
    feature_weight: float = 0.0
    feature_backbone: str = "vgg16"
    feature_layer: str = "block3_conv3"
    feature_weights: str | None = "imagenet"
    mask_weight: float = 0.0
    # What a mask-channel model learns (colourise_tf/training/trainer.py):
    #   hints   -- G gets the mask and the true ab inside it and colours the whole image
    #              (hint-guided); the mask loss is squared L2 to the hints where the mask is set.
    #   partial -- the IMPA project's stated target: G gets only the mask (zero hints) and learns to
    #              colour inside it and leave the rest grey: every chroma target (L1, D's
    #              real input, feature loss) is mask * ab, and the mask loss runs over all pixels.
    mask_target: str = "hints"
    segmentation_weight: float = 0.0

    def __post_init__(self) -> None:
        _check(self.adversarial, ADVERSARIAL, "loss.adversarial")
        _check(self.mask_target, MASK_TARGETS, "loss.mask_target")
        _check(self.reconstruction, RECONSTRUCTION, "loss.reconstruction")
        if not self.smooth_l1_delta > 0:
            raise ValueError(f"loss.smooth_l1_delta must be > 0, got {self.smooth_l1_delta}")
        _check(self.feature_backbone, FEATURE_BACKBONES, "loss.feature_backbone")


@dataclass(frozen=True)
class DataConfig:
    """Input pipeline settings (see ``colourise_tf.data``)."""

    dataset: str = "samples"
    split: str = "train"
    eval_split: str | None = None
    data_dir: str | None = None
    manual_dir: str | None = None
    batch_size: int = 4
    shuffle_buffer: int = 1000
    seed: int = 0
    cache: bool = False
    deterministic: bool = True
    segmentation_key: str | None = None
    augment: bool = True  # random scale/crop/flip in training (the DCGAN report: none)
    # Prepared shards: resize each crop to the model size in the training step (on the
    # accelerator) instead of on the host. auto = when TensorFlow sees a GPU or TPU.
    resize_on_device: str = "auto"

    def __post_init__(self) -> None:
        _check(self.resize_on_device, ("auto", "on", "off"), "data.resize_on_device")
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.shuffle_buffer < 1:
            raise ValueError(f"data.shuffle_buffer must be >= 1, got {self.shuffle_buffer}")


@dataclass(frozen=True)
class OptimConfig:
    """Adam settings for G and D (pix2pix / DCGAN: 2e-4, beta1 = 0.5)."""

    gen_lr: float = 2e-4
    disc_lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999

    def __post_init__(self) -> None:
        for name in ("gen_lr", "disc_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"optim.{name} must be a finite number >= 0, got {value}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"optim.{name} must be in [0, 1), got {value}")


@dataclass(frozen=True)
class TrainConfig:
    """Training-loop settings."""

    steps: int = 100_000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 50
    image_every: int = 500
    strategy: str = "default"
    precision: str = "auto"  # colourise_tf.training.runtime.resolve_precision: bf16 where the hardware has it
    seed: int = 0
    xla: bool = False  # jit-compile the train step
    deterministic_ops: bool = False  # tf.config.experimental.enable_op_determinism()
    # TensorFlow's CPU thread pools (colourise_tf.training.runtime.configure_threads): None = auto
    # (on a CPU-only host, 2 ops at a time on half the cores each), 0 = TF's default.
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    # unet-seg-separate (Tarrés 2021 S4.3.2): for the first N steps only the segmentation
    # loss trains (encoder + segmentation decoder); then encoder + colour decoder train on
    # both losses with the segmentation decoder frozen. 0 = both from the start.
    seg_pretrain_steps: int = 0
    # The CPU-only kernels (colourise_tf.ops): auto = only when TensorFlow sees no GPU and
    # no TPU, on = whatever the devices, off = never. Only ever in the training step.
    cpu_kernels: str = "auto"
    # Split the CPU into this many logical devices and train on them as replicas
    # (MirroredStrategy), to rehearse a multi-replica run on a laptop. 0 = no split.
    cpu_replicas: int = 0
    # Training steps per call of the step function (a tf.range loop inside it): fewer
    # Python round trips and host syncs (TPUs want tens to hundreds). Loops end at every
    # log, image and checkpoint step, so results do not depend on it.
    steps_per_loop: int = 1
    # INPUT_DISTRIBUTIONS: how replicas get their input.
    input_distribution: str = "auto"

    def __post_init__(self) -> None:
        _check(self.strategy, STRATEGIES, "train.strategy")
        _check(self.input_distribution, INPUT_DISTRIBUTIONS, "train.input_distribution")
        _check(self.cpu_kernels, CPU_KERNEL_MODES, "train.cpu_kernels")
        if self.cpu_replicas < 0:
            raise ValueError(f"train.cpu_replicas must be >= 0 (0: no split), got {self.cpu_replicas}")
        if self.seg_pretrain_steps < 0:
            raise ValueError(f"train.seg_pretrain_steps must be >= 0, got {self.seg_pretrain_steps}")
        _check(self.precision, PRECISIONS, "train.precision")
        for name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"train.{name} must be >= 0 (0: TensorFlow's default) or none (auto), got {value}")
        for name in ("steps", "checkpoint_every", "keep_checkpoints", "log_every", "image_every", "steps_per_loop"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: a name, the five sections and a human description."""

    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    description: str = ""


_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "loss": LossConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
}

# --------------------------------------------------------------------------- presets

_PRESETS: dict[str, ExperimentConfig] = {}


#: Górriz et al. 2019 (SIV-A) and 002 (S5.1): train on the 50,000 ILSVRC-2012 validation images,
#: test on 10 images per class of ``train`` (``colourise_tf.data``'s gorriz-* splits).
IMAGENET_GORRIZ = DataConfig(dataset="imagenet2012", split="gorriz-train", eval_split="gorriz-test")


def register_preset(cfg: ExperimentConfig) -> ExperimentConfig:
    """Adds a preset to the registry (names are unique)."""
    if cfg.name in _PRESETS:
        raise ValueError(f"preset {cfg.name!r} is already registered")
    _PRESETS[cfg.name] = cfg
    return cfg


def list_presets() -> list[str]:
    """Names of all registered presets, in registration order."""
    return list(_PRESETS)


def get_preset(name: str) -> ExperimentConfig:
    """Returns the named preset.

    Raises:
        ValueError: unknown name; the message lists the valid names.
    """
    try:
        return _PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(_PRESETS)}") from None


_GORRIZ_LOSS_NOTE = (
    " Adversarial loss: non-saturating log loss, as the paper writes (eq. 4-5); "
    "Gorriz's own Keras code (bbc/ColorGAN) trains with a least-squares (MSE) "
    "adversarial loss, which `loss.adversarial=least_squares` reproduces. L1 with lambda=100."
)


def _gorriz(name: str, norm: str, sn: bool, scales: int, row: str) -> ExperimentConfig:
    return ExperimentConfig(
        name=name,
        model=ModelConfig(
            generator="unet",
            discriminator="patchgan",
            image_size=256,
            colour_space="lab",
            num_scales=scales,
            gen_norm=norm,
            disc_norm=norm,
            gen_spectral_norm=sn,
            disc_spectral_norm=sn,
        ),
        loss=LossConfig(adversarial="non_saturating", reconstruction_weight=100.0),
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


def _register_all() -> None:
    unet_l1_model = ModelConfig(generator="unet", discriminator="none", image_size=256, colour_space="lab")
    register_preset(
        ExperimentConfig(
            name="unet-l1",
            model=unet_l1_model,
            loss=LossConfig(adversarial="none", reconstruction_weight=1.0),
            data=IMAGENET_GORRIZ,
            description=(
                "Tarrés 2021 S4.1.1: the pix2pix U-Net (BN, 256x256 Lab) trained with L1 only; "
                "no discriminator. Desaturated by design (regression to the mean)."
            ),
        )
    )
    register_preset(
        ExperimentConfig(
            name="pix2pix",
            model=ModelConfig(generator="unet", discriminator="patchgan", image_size=256, colour_space="lab"),
            loss=LossConfig(adversarial="non_saturating", reconstruction_weight=100.0),
            data=IMAGENET_GORRIZ,
            description=(
                "Górriz et al. 2019 SIV-B / Tarrés 2021 S4.1.2: U-Net (BN, dropout 0.5 in the first 3 decoder "
                "blocks) + 70x70 PatchGAN (BN), non-saturating GAN loss + 100 * L1, 256x256 Lab, "
                "N(0, 0.02) init, Adam 2e-4 / 0.5."
            ),
        )
    )
    register_preset(_gorriz("gorriz-in", "instance", False, 1, "IN"))
    register_preset(_gorriz("gorriz-bn-sn", "batch", True, 1, "BN + SN"))
    register_preset(_gorriz("gorriz-in-sn", "instance", True, 1, "IN + SN"))
    register_preset(_gorriz("gorriz-bn-sn-md", "batch", True, 3, "BN + SN + MD"))
    register_preset(_gorriz("gorriz-ibn-sn-md", "ibn", True, 3, "IBN + SN + MD"))
    bn = _gorriz("gorriz-bn", "batch", False, 1, "BN (baseline)")
    register_preset(
        dataclasses.replace(bn, description=bn.description + " Architecturally identical to the `pix2pix` preset.")
    )
    base = get_preset("gorriz-ibn-sn-md")
    register_preset(
        dataclasses.replace(
            base,
            name="tarres-vgg16",
            loss=dataclasses.replace(
                base.loss, feature_weight=1e-5, feature_backbone="vgg16", feature_layer="block3_conv3"
            ),
            description=(
                "Tarrés 2021 S4.2 / S5.1: the Gorriz model (IBN + SN + MD, the BBC baseline) plus a "
                "feature-reconstruction loss on ImageNet VGG16 `block3_conv3`, weight 1e-5; "
                "256x256 Lab, ILSVRC-2012. Adversarial loss as the gorriz-* presets." + _GORRIZ_LOSS_NOTE
            ),
        )
    )
    register_preset(
        dataclasses.replace(
            base,
            name="tarres-resnet50",
            loss=dataclasses.replace(
                base.loss, feature_weight=1e-5, feature_backbone="resnet50", feature_layer="conv2_block3_out"
            ),
            description=(
                "Tarrés 2021 S4.2 / Table 2 'ResNet' row: as tarres-vgg16 with an ImageNet ResNet50 "
                "backbone. The paper does not name the layer; we use `conv2_block3_out` (stride 4, "
                "256 channels: the same resolution and width as VGG16 block3_conv3)." + _GORRIZ_LOSS_NOTE
            ),
        )
    )
    seg_note = (
        " Pascal VOC (21 classes incl. background), 256x256 Lab; the per-class L1 is the "
        "paper's loss. No adversarial term: the paper's reported result (Table 5) is without one "
        "(its GAN variant collapsed). Pascal VOC segmentation is not in TFDS: point "
        "`data.dataset`/`data.data_dir` at a source with per-pixel labels and set "
        "`data.segmentation_key`."
    )
    register_preset(
        ExperimentConfig(
            name="tarres-seg-shared",
            model=ModelConfig(
                generator="unet-seg-shared", discriminator="none", image_size=256, colour_space="lab", n_classes=21
            ),
            loss=LossConfig(adversarial="none", reconstruction_weight=1.0, segmentation_weight=1.0),
            data=DataConfig(dataset="samples"),
            description=(
                "Tarrés 2021 S4.3.1: U-Net with a shared decoder whose last layer outputs 2 * n_classes "
                "chroma channels (an ab pair per class)." + seg_note
            ),
        )
    )
    register_preset(
        ExperimentConfig(
            name="tarres-seg-separate",
            model=ModelConfig(
                generator="unet-seg-separate", discriminator="none", image_size=256, colour_space="lab", n_classes=21
            ),
            loss=LossConfig(adversarial="none", reconstruction_weight=1.0, segmentation_weight=1.0),
            data=DataConfig(dataset="samples"),
            train=TrainConfig(seg_pretrain_steps=10_000),
            description=(
                "Tarrés 2021 S4.3.2: shared U-Net encoder, two decoders: a colour head (2 ab channels, "
                "tanh) and a segmentation head (n_classes logits). The segmentation term is the "
                "trainer's per-pixel cross-entropy. Two stages as the paper describes: segmentation "
                "alone first (train.seg_pretrain_steps=10000, 10% of the schedule: the paper says "
                "'once it achieved acceptable results'), then encoder + colour decoder on both "
                "losses with the segmentation decoder frozen." + seg_note
            ),
        )
    )
    dcgan_model = ModelConfig(
        generator="dcgan",
        discriminator="dcgan",
        image_size=64,
        colour_space="yuv",
        noise_channel=True,
        gen_filters=(64, 128, 256, 512),
        gen_norm="batch",
        gen_first_norm=True,
        gen_dropout=0.0,
        disc_filters=(64, 128, 256, 512),
        disc_norm="batch",
    )
    dcgan_desc = (
        "64x64 YUV (BT.601), grey + N(0, 1) noise channel in, U and V out (tanh); 4-conv "
        "discriminator with a classifier (one logit per image); vanilla (non-saturating) GAN "
        "loss plus the paper's image-space L1 term (S VI-B; weight 100 as in pix2pix, the "
        "seed gives none; `loss.reconstruction_weight=0` is the paper's Fig. 3 baseline). "
        "The Flickr sky set is not public: train on any sky folder via `data.dataset`. "
        "Y-channel sharpening is a post-process (inference), not part of the model. No data "
        "augmentation (S IV: 'No pre-training or data augmentation was used'): data.augment=false."
    )
    register_preset(
        ExperimentConfig(
            name="dcgan-sky",
            model=dcgan_model,
            loss=LossConfig(adversarial="non_saturating", reconstruction_weight=100.0),
            data=DataConfig(dataset="samples", augment=False),
            description="The DCGAN report S V-A: conditional DCGAN baseline. " + dcgan_desc,
        )
    )
    register_preset(
        ExperimentConfig(
            name="dcgan-sky-advanced",
            model=dataclasses.replace(dcgan_model, generator="dcgan-advanced"),
            loss=LossConfig(adversarial="non_saturating", reconstruction_weight=100.0),
            data=DataConfig(dataset="samples", augment=False),
            description=(
                "The DCGAN report S V-B: the 'more advanced' DCGAN: the input is concatenated with the "
                "CNN's output and one more conv makes the colour. " + dcgan_desc
            ),
        )
    )
    register_preset(
        ExperimentConfig(
            name="partial-mask",
            model=ModelConfig(
                generator="unet",
                discriminator="patchgan",
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
                "gives no mask-loss weight, we use 100 (same order as the L1 term). Seed data: "
                "17-category flowers; TFDS offers oxford_flowers102. With loss.mask_target=partial "
                "G gets only the mask and learns the paper's stated target: colour inside the mask, "
                "grey outside."
            ),
        )
    )
    register_preset(
        ExperimentConfig(
            name="resnet-patchgan",
            model=ModelConfig(
                generator="resnet",
                discriminator="patchgan",
                image_size=256,
                colour_space="lab",
                gen_filters=(64, 128, 256),
                gen_norm="batch",
                gen_first_norm=True,
                gen_init="glorot_uniform",
                resnet_blocks=9,
                disc_norm="none",
                disc_spectral_norm=True,
                disc_init="glorot_uniform",
                disc_tanh_head=True,
            ),
            loss=LossConfig(adversarial="non_saturating", reconstruction_weight=100.0),
            data=DataConfig(dataset="places365_small"),
            description=(
                "Ehrenberg S1.1: ResNet generator (c7s1-64, two stride-2 downsamplings, 9 residual "
                "blocks, two upsamplings, 7x7 conv + tanh; BN + ReLU; Xavier-uniform init) + 70x70 "
                "PatchGAN with spectral norm and LeakyReLU(0.2), tanh head (returned as the logit "
                "2z); 256x256 Lab, Places365. pix2pix loss (vanilla GAN + 100 * L1) as in the "
                "repository the paper builds on."
            ),
        )
    )
    pixel_model = ModelConfig(
        generator="unet",
        discriminator="pixelgan",
        image_size=32,
        colour_space="lab",
        gen_filters=UNET_32,
        gen_norm="batch",
        gen_first_norm=True,
        gen_dropout=0.0,
        disc_filters=(64, 128, 256, 512),
        disc_norm="none",
        disc_spectral_norm=True,
        disc_tanh_head=True,
    )
    pixel_desc = (
        "U-Net with 4 stride-2 4x4 conv downsamplings (BN + LeakyReLU 0.2) and 4 transposed-conv "
        "upsamplings (BN + ReLU), tanh ab output; 1x1 PixelGAN on concat(L, ab): first layer no "
        "norm + LeakyReLU, middle three {mid} + LeakyReLU, last tanh (returned as the logit 2z); "
        "CIFAR-10 32x32 Lab; vanilla GAN + 100 * L1 (pix2pix weighting; the paper gives none). "
        "The paper resizes the 32x32 images to 35x35 before the U-Net; 35 is not a multiple of "
        "the 4 stride-2 levels' 16, so we train at 32x32 (model.image_size=48 is the nearest "
        "size above 35 the U-Net accepts)."
    )
    register_preset(
        ExperimentConfig(
            name="unet-pixelgan-sn",
            model=pixel_model,
            loss=LossConfig(adversarial="non_saturating", reconstruction_weight=100.0),
            data=DataConfig(dataset="cifar10"),
            description="Ehrenberg S1.2: " + pixel_desc.format(mid="spectral norm"),
        )
    )
    register_preset(
        ExperimentConfig(
            name="unet-pixelgan-bn",
            model=dataclasses.replace(pixel_model, disc_norm="batch", disc_spectral_norm=False),
            loss=LossConfig(adversarial="non_saturating", reconstruction_weight=100.0),
            data=DataConfig(dataset="cifar10"),
            description="Ehrenberg S1.3: " + pixel_desc.format(mid="batch norm"),
        )
    )
    register_preset(
        ExperimentConfig(
            name="tiny",
            model=ModelConfig(
                generator="unet",
                discriminator="patchgan",
                image_size=32,
                colour_space="lab",
                gen_filters=(8, 16),
                gen_dropout=0.0,
                disc_filters=(8, 16),
            ),
            loss=LossConfig(adversarial="non_saturating", reconstruction_weight=100.0),
            data=DataConfig(dataset="samples", batch_size=2),
            train=TrainConfig(steps=20, checkpoint_every=10, log_every=5, image_every=10),
            description=(
                "Not from a seed: a ~7.6k-parameter pix2pix (2-level U-Net 8:16, PatchGAN 8:16, BN) "
                "at 32x32 Lab for tests and smoke runs."
            ),
        )
    )


_register_all()

# ------------------------------------------------------------------- overrides / IO


def _field_types(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def _is_optional(tp) -> tuple[bool, object]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _parse_scalar(text: str, tp, key: str):
    text = text.strip()
    if tp is bool:
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{key}: cannot parse {text!r} as a bool (true/false)")
    if tp is int:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                raise ValueError(f"{key}: cannot parse {text!r} as an integer") from None
            if not f.is_integer():
                raise ValueError(f"{key}: {text!r} is not an integer") from None
            return int(f)
    if tp is float:
        try:
            f = float(text)
        except ValueError:
            raise ValueError(f"{key}: cannot parse {text!r} as a number") from None
        if not math.isfinite(f) or abs(f) > _FLOAT32_MAX:
            raise ValueError(f"{key}: {text!r} is not a finite float32 number")
        return f
    if tp is str:
        return text
    raise ValueError(f"{key}: unsupported field type {tp!r}")


def _parse_value(text: str, tp, key: str):
    optional, inner = _is_optional(tp)
    if optional and text.strip().lower() in ("none", "null", ""):
        return None
    if typing.get_origin(inner) is tuple:
        (elem, *rest) = typing.get_args(inner)
        parts = [p for p in text.split(",") if p.strip()]
        return tuple(_parse_scalar(p, elem, key) for p in parts)
    return _parse_scalar(text, inner, key)


def apply_overrides(cfg: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """Returns ``cfg`` with ``section.field=value`` overrides applied.

    Values are parsed by the field's type: bools (``true``/``false``), ints, floats,
    strings, ``none``/``null`` for optional fields, and tuples as comma-separated
    lists (``model.gen_filters=8,16``). ``name=...`` and ``description=...`` set the
    top-level fields. The result is validated like any config.

    Raises:
        ValueError: malformed override, unknown section or field (the message lists
            the valid ones), or an unparsable / invalid value.
    """
    if isinstance(overrides, str):
        overrides = [overrides]
    updates: dict[str, dict[str, object]] = {}
    top: dict[str, object] = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form section.field=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key in ("name", "description"):
            top[key] = value
            continue
        if "." not in key:
            raise ValueError(
                f"override key {key!r} must be section.field with section in {list(_SECTIONS)} "
                "(or `name` / `description`)"
            )
        section, name = key.split(".", 1)
        if section not in _SECTIONS:
            raise ValueError(f"unknown config section {section!r} in {key!r}; sections: {list(_SECTIONS)}")
        types_ = _field_types(_SECTIONS[section])
        if name not in types_:
            raise ValueError(f"unknown config key {key!r}; fields of {section!r}: {', '.join(types_)}")
        updates.setdefault(section, {})[name] = _parse_value(value, types_[name], key)
    new = {s: dataclasses.replace(getattr(cfg, s), **u) for s, u in updates.items()}
    return dataclasses.replace(cfg, **new, **top)


def to_dict(cfg: ExperimentConfig) -> dict:
    """A JSON-ready nested dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _section_from_dict(cls: type, d: Mapping, section: str):
    if not isinstance(d, Mapping):
        raise ValueError(f"config section {section!r} must be a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown keys {unknown} in config section {section!r}; fields: {', '.join(sorted(names))}")
    return cls(**dict(d))


def from_dict(d: Mapping) -> ExperimentConfig:
    """Inverse of :func:`to_dict`; missing fields take their defaults.

    Raises:
        ValueError: unknown sections or fields, or invalid values.
    """
    known = set(_SECTIONS) | {"name", "description"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown top-level config keys {unknown}; expected {sorted(known)}")
    if "name" not in d:
        raise ValueError("config dict needs a 'name'")
    sections = {s: _section_from_dict(cls, d.get(s, {}), s) for s, cls in _SECTIONS.items()}
    return ExperimentConfig(name=d["name"], description=d.get("description", ""), **sections)


def save_config(cfg: ExperimentConfig, path: str | os.PathLike) -> None:
    """Writes ``cfg`` as indented JSON, atomically (:func:`colourise_tf.fileio.atomic_writer`;
    ``path`` may be a ``gs://``-style URI)."""
    makedirs(parent(path))
    with atomic_writer(path, "w") as f:
        json.dump(to_dict(cfg), f, indent=2, sort_keys=False)
        f.write("\n")


def load_config(path: str | os.PathLike) -> ExperimentConfig:
    """Reads a config written by :func:`save_config`.

    Raises:
        ValueError: naming ``path``, if it is not JSON or not a valid configuration.
    """
    path = os.fspath(path)
    try:
        data = json.loads(read_text(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON configuration ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON configuration (a {type(data).__name__}, not an object)")
    try:
        return from_dict(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{path}: {exc}") from None
