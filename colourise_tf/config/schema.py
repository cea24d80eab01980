"""The configuration schema: frozen dataclasses, ``key=value`` overrides and JSON.

An experiment is one :class:`ExperimentConfig` made of five frozen sections
(:class:`ModelConfig` with its nested :class:`GeneratorConfig` and
:class:`DiscriminatorConfig`, :class:`LossConfig`, :class:`DataConfig`,
:class:`OptimConfig`, :class:`TrainConfig`). Each section checks its own fields when
built; rules across fields are :func:`colourise_tf.config.validation.validate`, run
whenever an :class:`ExperimentConfig` is built. Overrides address fields by path::

    cfg = apply_overrides(get_preset("gorriz-ibn-sn-md"), ["model.num_scales=1", "model.generator.norm=batch"])

Configurations written before the generator and discriminator were nested (flat
``model.gen_*`` / ``model.disc_*`` fields, ``model.generator=unet``) still load, and
the old override keys still work (:data:`LEGACY_MODEL_KEYS`).
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

from ..fileio import atomic_writer, makedirs, parent, read_text
from .validation import validate

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
class GeneratorConfig:
    """The generator network.

    Attributes:
        kind: ``unet`` (Górriz et al. 2019 §IV-B, Ehrenberg §1.2), ``resnet`` (Ehrenberg §1.1),
            ``dcgan`` / ``dcgan-advanced`` (the DCGAN report), ``unet-seg-shared`` /
            ``unet-seg-separate`` (Tarrés 2021 §4.3).
        filters: widths. U-Net: encoder widths, one per stride-2 level (depth = len);
            the decoder widths are ``reversed(filters[:-1])`` and a last stride-2
            transposed conv makes the output. ResNet: stem width then one width per
            stride-2 downsampling (residual blocks use the last). DCGAN: the widths of
            layers 1-4 (layers 5-6 mirror widths 3 and 2).
        norm: ``none`` | ``batch`` | ``instance`` | ``ibn``.
        first_norm: normalise the first (input) layer too. Górriz et al. 2019 says no
            ("to avoid sample oscillation"); Ehrenberg §1.2 puts BN after every conv.
        spectral_norm: spectral normalisation on every conv (Górriz et al. 2019 §IV-B puts
            it in the U-Net blocks).
        dropout: dropout rate in the first ``dropout_blocks`` decoder blocks.
        dropout_blocks: pix2pix uses 3.
        init: ``normal`` = N(0, 0.02) kernels and N(1, 0.02) norm scales (pix2pix,
            DCGAN) or any Keras initializer name, e.g. ``glorot_uniform`` (Ehrenberg §1.1;
            norm scales then start at 1).
        resnet_blocks: residual blocks of the ResNet generator (9 as in pix2pix/CycleGAN).
    """

    kind: str = "unet"
    filters: tuple[int, ...] = UNET_256
    norm: str = "batch"
    first_norm: bool = False
    spectral_norm: bool = False
    dropout: float = 0.5
    dropout_blocks: int = 3
    init: str = "normal"
    resnet_blocks: int = 9

    def __post_init__(self) -> None:
        _coerce_sequences(self)
        _check(self.kind, GENERATORS, "model.generator.kind")
        _check(self.norm, NORMS, "model.generator.norm")
        if not self.filters or any(int(f) < 1 for f in self.filters):
            raise ValueError(f"model.generator.filters must be positive widths, got {self.filters}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.generator.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class DiscriminatorConfig:
    """The discriminator network (one copy per scale, ``ModelConfig.num_scales``).

    Attributes:
        kind: ``patchgan`` (70x70 for 4 widths), ``pixelgan`` (1x1, Ehrenberg),
            ``dcgan`` (one logit per image, the DCGAN report) or ``none``.
        filters: widths. PatchGAN: all but the last are stride-2 4x4 convs, the last a
            stride-1 4x4 conv, then a stride-1 4x4 conv to 1 logit (``(64, 128, 256,
            512)`` = 70x70). PixelGAN: widths of the four hidden 1x1 convs. DCGAN:
            widths of the four stride-2 convs.
        norm: normalisation of every layer except the first.
        spectral_norm: spectral normalisation on every conv/dense.
        init: like :attr:`GeneratorConfig.init`.
        tanh_head: Ehrenberg: the discriminator ends in tanh. We return the equivalent
            logit ``2 z`` (see :mod:`colourise_tf.discriminators`).
    """

    kind: str = "patchgan"
    filters: tuple[int, ...] = PATCHGAN_70
    norm: str = "batch"
    spectral_norm: bool = False
    init: str = "normal"
    tanh_head: bool = False

    def __post_init__(self) -> None:
        _coerce_sequences(self)
        _check(self.kind, DISCRIMINATORS, "model.discriminator.kind")
        _check(self.norm, NORMS, "model.discriminator.norm")
        if not self.filters or any(int(f) < 1 for f in self.filters):
            raise ValueError(f"model.discriminator.filters must be positive widths, got {self.filters}")


@dataclass(frozen=True)
class ModelConfig:
    """Generator and discriminator architecture, and what they share.

    Attributes:
        generator: the generator (:class:`GeneratorConfig`).
        discriminator: the discriminator (:class:`DiscriminatorConfig`).
        image_size: native (training) resolution in pixels, square.
        colour_space: ``lab`` (L + ab) or ``yuv`` (Y + UV, the DCGAN report).
        num_scales: number of discriminator copies on x1, x2, x4... average-pooled inputs.
        noise_channel: the DCGAN report: an extra N(0, 1) input channel for G.
        mask_channel: the IMPA project: G gets a binary mask and the 2 hint chroma channels; D
            gets the mask as an extra channel.
        n_classes: number of segmentation classes (21 for Pascal VOC); 0 otherwise.
        ibn_levels: IBN uses instance+batch norm in layers whose output is at most
            ``ibn_levels`` stride-2 levels below the input resolution, batch norm
            deeper; 0 = half the network's depth, rounded up. See
            :mod:`colourise_tf.layers`.
        ibn_ratio: fraction of channels instance-normalised in an IBN layer.
        leaky_slope: LeakyReLU negative slope (0.2 throughout the papers).
        bn_momentum: Keras BatchNormalization momentum (0.9 = PyTorch's 0.1).
        norm_epsilon: epsilon of all normalisation layers (PyTorch's 1e-5).

    Rules across fields (widths per network kind, scales, classes) are checked by
    :func:`colourise_tf.config.validation.validate` when the experiment is built.
    """

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    image_size: int = 256
    colour_space: str = "lab"
    num_scales: int = 1
    noise_channel: bool = False
    mask_channel: bool = False
    n_classes: int = 0
    ibn_levels: int = 0
    ibn_ratio: float = 0.5
    leaky_slope: float = 0.2
    bn_momentum: float = 0.9
    norm_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        _check(self.colour_space, COLOUR_SPACES, "model.colour_space")
        if self.image_size < 1:
            raise ValueError(f"model.image_size must be positive, got {self.image_size}")
        if self.num_scales < 1:
            raise ValueError(f"model.num_scales must be >= 1, got {self.num_scales}")
        if not 0.0 <= self.leaky_slope < 1.0:
            raise ValueError(f"model.leaky_slope must be in [0, 1), got {self.leaky_slope}")
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

    def __post_init__(self) -> None:
        validate(self)


_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "loss": LossConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
}


#: Keys of the flat ModelConfig (before the generator and discriminator were nested)
#: -> their path under ``model`` now. Accepted in overrides and in config files.
LEGACY_MODEL_KEYS = {
    "generator": "generator.kind",
    "discriminator": "discriminator.kind",
    "gen_filters": "generator.filters",
    "gen_norm": "generator.norm",
    "gen_first_norm": "generator.first_norm",
    "gen_spectral_norm": "generator.spectral_norm",
    "gen_dropout": "generator.dropout",
    "gen_dropout_blocks": "generator.dropout_blocks",
    "gen_init": "generator.init",
    "resnet_blocks": "generator.resnet_blocks",
    "disc_filters": "discriminator.filters",
    "disc_norm": "discriminator.norm",
    "disc_spectral_norm": "discriminator.spectral_norm",
    "disc_init": "discriminator.init",
    "disc_tanh_head": "discriminator.tanh_head",
}

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


def _nested_types(cls: type, prefix: str) -> dict[str, tuple[type, str]]:
    """``"generator.norm"`` -> (``GeneratorConfig``, ``"norm"``) for every field of
    ``cls`` and of its nested dataclass fields, addressed by dotted path."""
    out: dict[str, tuple[type, str]] = {}
    for name, tp in _field_types(cls).items():
        if dataclasses.is_dataclass(tp):
            for sub, (owner, leaf) in _nested_types(tp, f"{prefix}{name}.").items():
                out[sub] = (owner, leaf)
        else:
            out[f"{prefix}{name}"] = (cls, name)
    return out


def _replace_path(obj, path: list[str], value):
    """``obj`` with the field at ``path`` (nested dataclasses) set to ``value``."""
    head, *rest = path
    if not rest:
        return dataclasses.replace(obj, **{head: value})
    return dataclasses.replace(obj, **{head: _replace_path(getattr(obj, head), rest, value)})


def apply_overrides(cfg: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """Returns ``cfg`` with ``section.field=value`` overrides applied.

    Nested fields are addressed by their path (``model.generator.norm=ibn``); the flat
    keys of older versions (``model.gen_norm=ibn``, ``model.generator=unet``) are
    accepted too (:data:`LEGACY_MODEL_KEYS`). Values are parsed by the field's type:
    bools (``true``/``false``), ints, floats, strings, ``none``/``null`` for optional
    fields, and tuples as comma-separated lists (``model.generator.filters=8,16``).
    ``name=...`` and ``description=...`` set the top-level fields. All overrides are
    applied first, then the result is validated like any config
    (:func:`colourise_tf.config.validation.validate`).

    Raises:
        ValueError: malformed override, unknown section or field (the message lists
            the valid ones), or an unparsable / invalid value.
    """
    if isinstance(overrides, str):
        overrides = [overrides]
    sections = {s: getattr(cfg, s) for s in _SECTIONS}
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
        if section == "model":
            name = LEGACY_MODEL_KEYS.get(name, name)
        fields = _nested_types(_SECTIONS[section], "")
        if name not in fields:
            raise ValueError(f"unknown config key {key!r}; fields of {section!r}: {', '.join(fields)}")
        owner, leaf = fields[name]
        parsed = _parse_value(value, _field_types(owner)[leaf], key)
        sections[section] = _replace_path(sections[section], name.split("."), parsed)
    return dataclasses.replace(cfg, **sections, **top)


def to_dict(cfg: ExperimentConfig) -> dict:
    """A JSON-ready nested dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def flat_dict(cfg: ExperimentConfig) -> dict:
    """:func:`to_dict` flattened to dotted keys: ``{"model.generator.filters": [...], ...}``."""

    def walk(d: Mapping, prefix: str):
        for key, value in d.items():
            if isinstance(value, Mapping):
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    return dict(walk(to_dict(cfg), ""))


def _upgrade_model_dict(d: Mapping) -> dict:
    """A ``model`` section written by an older version (flat ``gen_*`` / ``disc_*``
    keys, ``generator``/``discriminator`` as kind strings) in today's nested form."""
    out = {k: v for k, v in d.items() if k not in LEGACY_MODEL_KEYS or isinstance(v, Mapping)}
    for old, new in LEGACY_MODEL_KEYS.items():
        if old in d and not isinstance(d[old], Mapping):
            part, leaf = new.split(".")
            nested = dict(out.get(part, {}))
            nested.setdefault(leaf, d[old])
            out[part] = nested
    return out


def _section_from_dict(cls: type, d: Mapping, section: str):
    if not isinstance(d, Mapping):
        raise ValueError(f"config section {section!r} must be a mapping, got {type(d).__name__}")
    types_ = _field_types(cls)
    unknown = sorted(set(d) - set(types_))
    if unknown:
        raise ValueError(f"unknown keys {unknown} in config section {section!r}; fields: {', '.join(sorted(types_))}")
    values = {}
    for name, value in d.items():
        tp = types_[name]
        values[name] = _section_from_dict(tp, value, f"{section}.{name}") if dataclasses.is_dataclass(tp) else value
    return cls(**values)


def from_dict(d: Mapping) -> ExperimentConfig:
    """Inverse of :func:`to_dict`; missing fields take their defaults. Model sections
    of older versions (flat ``gen_*`` / ``disc_*`` keys) are read too.

    Raises:
        ValueError: unknown sections or fields, or invalid values.
    """
    known = set(_SECTIONS) | {"name", "description"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown top-level config keys {unknown}; expected {sorted(known)}")
    if "name" not in d:
        raise ValueError("config dict needs a 'name'")
    raw = {s: d.get(s, {}) for s in _SECTIONS}
    if isinstance(raw["model"], Mapping):
        raw["model"] = _upgrade_model_dict(raw["model"])
    sections = {s: _section_from_dict(cls, raw[s], s) for s, cls in _SECTIONS.items()}
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
