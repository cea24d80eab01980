"""Reading training run directories (written by :mod:`colourise_tf.training`) back into models.

A run directory holds ``config.json`` (the resolved configuration) and
``checkpoints/`` (``tf.train.CheckpointManager``, objects named ``generator``,
``discriminator``, ``g_opt``, ``d_opt``, ``step``[, ``iterator``]). This module only
reads them, so evaluation, export and the CLI need nothing from the training package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras
import tensorflow as tf

from . import fileio
from .config import ExperimentConfig, load_config
from .formats import run_dir as run_dir_format
from .models import build_discriminator, build_generator


class RunDirectoryError(FileNotFoundError):
    """A path is not a usable run directory (message says what is missing)."""


@dataclass
class LoadedRun:
    """A run's configuration, models and the step they were saved at."""

    cfg: ExperimentConfig
    generator: keras.Model
    discriminator: keras.Model | None
    step: int
    checkpoint: str | None


def is_run_directory(path: str | os.PathLike) -> bool:
    """True if ``path`` (local or a ``gs://``-style URI) is a directory with a ``config.json``."""
    config = run_dir_format.config_path(path)
    return fileio.exists(config) and not fileio.isdir(config)


def latest_checkpoint(run_dir: str | os.PathLike) -> str | None:
    """The newest checkpoint prefix in ``run_dir/checkpoints`` (or None)."""
    return tf.train.latest_checkpoint(run_dir_format.checkpoint_dir(run_dir))


def load_run(
    path: str | os.PathLike,
    *,
    with_discriminator: bool = False,
    require_checkpoint: bool = True,
) -> LoadedRun:
    """Rebuilds a run's generator (and discriminator) and restores their weights.

    Args:
        path: a run directory, or a checkpoint prefix inside ``<run>/checkpoints``
            (e.g. ``runs/x/checkpoints/ckpt-300``) to load that step; local or a
            URI of any file system TensorFlow reads (``gs://``, ``ram://``, ``file://``).
        with_discriminator: also build and restore the discriminator.
        require_checkpoint: raise if there is no checkpoint (otherwise the models
            keep their random initial weights and ``step`` is 0).

    Raises:
        RunDirectoryError: no or an invalid ``config.json``, no checkpoint, or one that
            cannot be read (truncated, corrupt, or from another architecture).
    """
    path = fileio.normalize(path).rstrip("/") or "/"
    ckpt = None
    # A checkpoint prefix first: ram:// reports any prefix of a file as a directory.
    if tf.io.gfile.exists(path + ".index"):
        run_dir = fileio.parent(fileio.parent(path))
        ckpt = path
    elif fileio.isdir(path):
        run_dir = path
    else:
        raise RunDirectoryError(f"{path}: not a run directory nor a checkpoint prefix")
    if not is_run_directory(run_dir):
        raise RunDirectoryError(f"{run_dir}: no config.json, so not a colourise_tf run directory")
    try:
        cfg = load_config(run_dir_format.config_path(run_dir))
    except (ValueError, OSError, tf.errors.OpError) as exc:
        raise RunDirectoryError(str(exc)) from None
    ckpt = ckpt or latest_checkpoint(run_dir)
    if ckpt is None and require_checkpoint:
        raise RunDirectoryError(f"{run_dir}: no checkpoint in {run_dir_format.checkpoint_dir(run_dir)}")
    generator = build_generator(cfg.model)
    discriminator = build_discriminator(cfg.model) if with_discriminator else None
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    objects = {"generator": generator, "step": step}
    if discriminator is not None:
        objects["discriminator"] = discriminator
    if ckpt is not None:
        try:
            tf.train.Checkpoint(**objects).read(ckpt).expect_partial().assert_existing_objects_matched()
        except (tf.errors.OpError, ValueError, IndexError, AssertionError) as exc:
            # A truncated data file raises IndexError ("Read less bytes than requested"),
            # a corrupt index DataLossError, another architecture AssertionError.
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise RunDirectoryError(f"{ckpt}: cannot read the checkpoint ({reason.splitlines()[0]})") from None
    return LoadedRun(cfg, generator, discriminator, int(step.numpy()), ckpt)
