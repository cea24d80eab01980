"""Rules across configuration fields, in one place.

Each section checks its own fields when it is built (a value in range, a name from
the list). The rules here relate several fields; :func:`validate` runs whenever an
:class:`~colourise_tf.config.schema.ExperimentConfig` is built (a preset, overrides,
a config file), so a bad combination fails before anything is traced or written.
:func:`validate_for_training` adds what only training needs. Whether the networks
can run at ``model.image_size`` is shape arithmetic of the networks themselves:
:func:`colourise_tf.models.check_image_size`.
"""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:
    from .schema import ExperimentConfig, ModelConfig

__all__ = ["validate", "validate_model", "validate_for_training"]


def validate_model(m: ModelConfig) -> None:
    """The generator's and discriminator's widths for their kinds, and what a kind
    needs of the rest of the model.

    Raises:
        ValueError: naming the fields.
    """
    g, d = m.generator, m.discriminator
    if g.kind.startswith("unet-seg") and m.n_classes < 1:
        raise ValueError(f"model.generator.kind={g.kind!r} needs model.n_classes >= 1")
    if g.kind.startswith("dcgan") and len(g.filters) != 4:
        raise ValueError(f"model.generator.filters for {g.kind} needs 4 widths, got {g.filters}")
    if d.kind == "dcgan":
        if m.num_scales != 1:
            raise ValueError("model.discriminator.kind='dcgan' has one logit per image: use model.num_scales=1")
        if len(d.filters) != 4:
            raise ValueError(f"model.discriminator.filters for dcgan needs 4 widths, got {d.filters}")
    if d.kind == "pixelgan" and len(d.filters) != 4:
        raise ValueError(f"model.discriminator.filters for pixelgan needs 4 widths, got {d.filters}")
    if d.kind == "patchgan" and len(d.filters) < 2:
        raise ValueError(f"model.discriminator.filters for patchgan needs >= 2 widths, got {d.filters}")


def validate(cfg: ExperimentConfig) -> None:
    """Every rule across fields of a complete configuration.

    Raises:
        ValueError: naming the fields and what to change.
    """
    validate_model(cfg.model)
    if cfg.loss.adversarial != "none" and cfg.model.discriminator.kind == "none":
        raise ValueError(
            f"loss.adversarial={cfg.loss.adversarial!r} needs a discriminator, but "
            "model.discriminator.kind is 'none': set loss.adversarial=none or pick a discriminator"
        )


def validate_for_training(cfg: ExperimentConfig) -> None:
    """:func:`validate`, plus what training needs: per-pixel class labels for a
    segmentation-aware generator.

    Raises:
        ValueError: naming the fields and what to change.
    """
    validate(cfg)
    m, d = cfg.model, cfg.data
    if m.n_classes and d.segmentation_key is None:
        raise ValueError(
            f"{m.generator.kind} (model.n_classes={m.n_classes}) learns from per-pixel "
            f"class labels: train it on a TFDS dataset with a segmentation-mask feature and name "
            f"that feature with data.segmentation_key (e.g. --dataset <name> "
            f"data.segmentation_key=segmentation_mask); {d.dataset!r} has none"
        )
