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


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (e.g. ``avx2``, ``avx512f``,
    ``avx512_bf16``, ``amx_bf16``); empty where that file is missing (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()
