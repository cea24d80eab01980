"""The one switch of the CPU-only kernels.

Every kernel in :mod:`colourise_tf.ops` asks :func:`cpu_kernels_enabled` first: ``auto``
(the default) lets them run only in training on a host where TensorFlow sees no GPU and
no TPU, ``on`` in training whatever the devices, ``off`` never. The training loop sets
the mode from ``train.cpu_kernels`` while it traces its step (:func:`cpu_kernels`);
inference and exports never use the kernels.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import tensorflow as tf

from colourise_tf.config import CPU_KERNEL_MODES

#: The name scope every CPU-only kernel's ops are created in (for graph checks).
CPU_KERNEL_SCOPE = "cpu_kernel"
_mode = "auto"


@functools.cache
def cpu_only() -> bool:
    """Whether TensorFlow sees no GPU and no TPU (initialises the runtime; cached)."""
    return not tf.config.list_logical_devices("GPU") and not tf.config.list_logical_devices("TPU")


def cpu_kernels_enabled(training: bool) -> bool:
    """Whether a CPU-only kernel may replace TensorFlow's op in this call.

    Never outside training; in training as the current mode says (see the module
    docstring and :func:`cpu_kernels`).
    """
    if not training or _mode == "off":
        return False
    return _mode == "on" or cpu_only()


@contextlib.contextmanager
def cpu_kernels(mode: str) -> Iterator[None]:
    """Sets the CPU-kernel mode (``auto``, ``on`` or ``off``) within the block.

    The mode is read when a function is traced, so a ``tf.function`` traced inside
    the block keeps the kernels it was traced with.
    """
    global _mode
    if mode not in CPU_KERNEL_MODES:
        raise ValueError(f"unknown CPU-kernel mode {mode!r}; expected one of {', '.join(CPU_KERNEL_MODES)}")
    previous, _mode = _mode, mode
    try:
        yield
    finally:
        _mode = previous
