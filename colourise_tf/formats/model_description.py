"""The description of a generator that travels with an export: in a SavedModel's
``assets/colourise_export.json`` and in a ``.tflite`` sidecar (each adds its own keys).

Written with :func:`describe_model`, read back with :func:`spec_from_description`. The
fields are what a loader needs to feed the generator and read its output::

    preset, image_size, colour_space, noise_channel, mask_channel, n_classes,
    generator, generator_input_channels, mask_target
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from colourise_tf.config import ExperimentConfig
from colourise_tf.inference import ModelSpec

__all__ = ["describe_model", "spec_from_description", "colours_inside_mask_only"]


def describe_model(cfg: ExperimentConfig) -> dict[str, Any]:
    """The shared fields for the generator of ``cfg``."""
    m = cfg.model
    spec = ModelSpec.from_model_config(m)
    return {
        "preset": cfg.name,
        "image_size": spec.image_size,
        "colour_space": spec.colour_space,
        "noise_channel": spec.noise_channel,
        "mask_channel": spec.mask_channel,
        "n_classes": spec.n_classes,
        "generator": m.generator.kind,
        "generator_input_channels": spec.input_channels,
        # "partial": the model colours inside its mask only (no mask given = a full one)
        "mask_target": cfg.loss.mask_target if m.mask_channel else None,
    }


def spec_from_description(d: Mapping[str, Any]) -> ModelSpec:
    """The :class:`~colourise_tf.inference.ModelSpec` a description gives (fields an
    older file lacks take their defaults: Lab, no noise, no mask, no classes)."""
    return ModelSpec(
        image_size=int(d["image_size"]),
        colour_space=str(d.get("colour_space", "lab")),
        noise_channel=bool(d.get("noise_channel", False)),
        mask_channel=bool(d.get("mask_channel", False)),
        n_classes=int(d.get("n_classes", 0) or 0),
    )


def colours_inside_mask_only(d: Mapping[str, Any]) -> bool:
    """Whether a described mask model colours only inside its mask (``mask_target``
    ``partial``); a description without ``mask_target`` predates it (hints)."""
    return bool(d.get("mask_channel")) and d.get("mask_target") == "partial"
