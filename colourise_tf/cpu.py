"""What the host CPU is, and the one gate of the CPU-only kernels.

The CPU-only kernels (:mod:`winograd`, :mod:`thin_conv`, :mod:`gemm_conv` and the
GEMM kernel gradients of :func:`colourise_tf.layers.conv_forward`) were written and
measured against oneDNN on CPUs; on a GPU or TPU they would replace cuDNN's and
XLA's own kernels. Each of them asks :func:`cpu_kernels_enabled` first, and that
is the only switch: ``auto`` (the default) lets them run only in training on a host
where TensorFlow sees no GPU and no TPU, ``on`` in training whatever the devices,
``off`` never. The training loop sets it from ``train.cpu_kernels`` while it traces
its step (:func:`cpu_kernels`); inference and exports never use them.
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


@functools.lru_cache(maxsize=None)
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


def _cpuinfo_field(name: str) -> str:
    """The first ``name : value`` line's value in ``/proc/cpuinfo``; empty where that
    file or field is missing (not Linux, not x86)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_flags() -> set[str]:
    """The CPU's feature flags (e.g. ``avx2``, ``avx512f``, ``avx512_bf16``, ``amx_bf16``)."""
    return set(_cpuinfo_field("flags").split())


def cpu_summary() -> str:
    """The CPU's model name and its widest vector / bf16 feature, for benchmark records."""
    flags = cpu_flags()
    best = next((f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags), "no AVX2")
    return f"{_cpuinfo_field('model name')} ({best})"
