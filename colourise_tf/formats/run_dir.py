"""A training run directory, as :mod:`colourise_tf.training` writes it and
:mod:`colourise_tf.runs` and :mod:`colourise_tf.predictors` read it::

    <run>/config.json        the resolved experiment configuration
    <run>/checkpoints/       tf.train.CheckpointManager: ckpt-N.index, ckpt-N.data-*
    <run>/logs/              TensorBoard event files
    <run>/samples.png        grey | generated | real grid at the end of the run
    <run>/summary.json       final step, losses, throughput

Paths may be local or URIs (``gs://``, ``ram://``); they are joined with
:func:`colourise_tf.fileio.join`.
"""

from __future__ import annotations

from colourise_tf import fileio

CONFIG = "config.json"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
SAMPLES = "samples.png"
SUMMARY = "summary.json"


def config_path(run_dir) -> str:
    """``<run>/config.json``."""
    return fileio.join(run_dir, CONFIG)


def checkpoint_dir(run_dir) -> str:
    """``<run>/checkpoints``."""
    return fileio.join(run_dir, CHECKPOINTS)


def logs_dir(run_dir) -> str:
    """``<run>/logs``."""
    return fileio.join(run_dir, LOGS)


def samples_path(run_dir) -> str:
    """``<run>/samples.png``."""
    return fileio.join(run_dir, SAMPLES)


def summary_path(run_dir) -> str:
    """``<run>/summary.json``."""
    return fileio.join(run_dir, SUMMARY)
