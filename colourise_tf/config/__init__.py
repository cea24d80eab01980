"""Experiment configuration: the schema (:mod:`.schema`), the rules across fields
(:mod:`.validation`) and the named presets (:mod:`.presets`).

A run starts from a preset and applies ``section.field=value`` overrides::

    cfg = apply_overrides(get_preset("gorriz-ibn-sn-md"), ["model.num_scales=1", "train.steps=10"])
    save_config(cfg, "runs/x/config.json")

The package is pure Python (dataclasses + JSON): it imports nothing from TensorFlow,
Keras or NumPy, so configs can be read anywhere.
"""

from .presets import IMAGENET_GORRIZ, get_preset, list_presets, register_preset
from .schema import (
    ADVERSARIAL,
    COLOUR_SPACES,
    CPU_KERNEL_MODES,
    DISCRIMINATORS,
    FEATURE_BACKBONES,
    GENERATORS,
    INPUT_DISTRIBUTIONS,
    LEGACY_MODEL_KEYS,
    MASK_TARGETS,
    NORMS,
    PATCHGAN_70,
    PRECISIONS,
    RECONSTRUCTION,
    STRATEGIES,
    UNET_32,
    UNET_256,
    DataConfig,
    DiscriminatorConfig,
    ExperimentConfig,
    GeneratorConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    flat_dict,
    from_dict,
    load_config,
    save_config,
    to_dict,
)
from .validation import validate, validate_for_training, validate_model

__all__ = [
    "GENERATORS",
    "DISCRIMINATORS",
    "NORMS",
    "COLOUR_SPACES",
    "ADVERSARIAL",
    "RECONSTRUCTION",
    "MASK_TARGETS",
    "FEATURE_BACKBONES",
    "STRATEGIES",
    "PRECISIONS",
    "CPU_KERNEL_MODES",
    "INPUT_DISTRIBUTIONS",
    "LEGACY_MODEL_KEYS",
    "UNET_256",
    "UNET_32",
    "PATCHGAN_70",
    "IMAGENET_GORRIZ",
    "GeneratorConfig",
    "DiscriminatorConfig",
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
    "validate",
    "validate_model",
    "validate_for_training",
    "to_dict",
    "flat_dict",
    "from_dict",
    "save_config",
    "load_config",
]
