"""What the host CPU is: no accelerator visible, and its instruction-set flags.

The training-only fast paths (:mod:`winograd`, :mod:`thin_conv`, :mod:`gemm_conv`)
apply on CPU-only hosts, and some only where they were measured to win.
"""

from __future__ import annotations

import functools

import tensorflow as tf


@functools.lru_cache(maxsize=None)
def cpu_only() -> bool:
    """Whether TensorFlow sees no GPU and no TPU (initialises the runtime; cached)."""
    return not tf.config.list_logical_devices("GPU") and not tf.config.list_logical_devices("TPU")


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
