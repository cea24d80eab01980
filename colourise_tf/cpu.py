"""What the host CPU is: its feature flags and a one-line summary for benchmark records.

The switch of the CPU-only kernels is :mod:`colourise_tf.ops.gate`.
"""

from __future__ import annotations


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
