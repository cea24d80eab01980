"""Distribution strategy, numeric precision and CPU thread pools, each chosen by one setting.

``make_strategy("default" | "onedevice" | "mirrored" | "multiworker" | "tpu")``,
``set_precision("float32" | "mixed_bfloat16" | "mixed_float16" | "auto")`` and
``configure_threads(intra, inter)`` (TensorFlow's CPU thread pools).
All must run before any model or optimiser is built; ``configure_threads`` before
TensorFlow runs its first op.
"""

from __future__ import annotations

import logging
import os

import keras
import tensorflow as tf

from colourise_tf.config import PRECISIONS, STRATEGIES
from colourise_tf.cpu import cpu_flags as _cpu_flags

log = logging.getLogger("colourise_tf.training")


def configure_cpu_replicas(n: int) -> int:
    """Splits the CPU into ``n`` logical devices (before TensorFlow initialises).

    Returns the number of logical CPUs now available (1, and TensorFlow untouched, for
    ``n <= 1``). If TensorFlow is already running
    (a notebook, the tests), the devices it has are kept; that is enough when it has at
    least ``n`` of them.

    Raises:
        ValueError: TensorFlow already runs with fewer than ``n`` logical CPUs.
    """
    if n <= 1:
        return 1  # nothing to do; and TensorFlow must not start here (multi-worker
        # collectives are configured at start-up)
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:  # already initialised
        pass
    have = len(tf.config.list_logical_devices("CPU"))
    if have < n:
        raise ValueError(
            f"train.cpu_replicas={n}: TensorFlow already runs with {have} logical CPU device(s) in this "
            "process; split the CPU before it starts (a new process, or configure_cpu_replicas first)"
        )
    return have


def make_strategy(
    name: str = "default", tpu_address: str | None = None, cpu_replicas: int = 0
) -> tf.distribute.Strategy:
    """Builds the ``tf.distribute`` strategy named by one setting.

    Args:
        name: ``default`` (whatever device TF picks, no distribution), ``onedevice``
            (the first GPU), ``mirrored`` (all local GPUs, or ``cpu_replicas`` logical
            CPUs), ``multiworker`` (``MultiWorkerMirroredStrategy`` configured from the
            ``TF_CONFIG`` environment variable) or ``tpu`` (``TPUClusterResolver``;
            ``tpu_address`` or the environment names it).
        tpu_address: optional TPU name or ``grpc://`` address.
        cpu_replicas: with ``default`` or ``mirrored`` and more than one: a
            ``MirroredStrategy`` over that many logical CPU devices (see
            :func:`configure_cpu_replicas`), to rehearse a multi-replica run.

    Raises:
        ValueError: unknown name; ``multiworker`` without ``TF_CONFIG``; ``onedevice``
            or ``mirrored`` with no GPU visible and no ``cpu_replicas`` (they would
            silently train on the CPU); too few logical CPUs for ``cpu_replicas``.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    if name == "multiworker":  # first: its collectives must be configured before TensorFlow starts
        if cpu_replicas > 1:
            raise ValueError(f"train.cpu_replicas={cpu_replicas} needs --strategy mirrored (or default), not {name!r}")
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multiworker' needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if cpu_replicas > 1 and name in ("default", "mirrored"):
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(cpus) < cpu_replicas:
            raise ValueError(
                f"train.cpu_replicas={cpu_replicas} but TensorFlow has {len(cpus)} logical CPU device(s) "
                "(call colourise_tf.training.runtime.configure_cpu_replicas before TensorFlow starts)"
            )
        # Sums through one device instead of collective ops: the same arithmetic, and
        # several such strategies can live in one process (a notebook, the tests).
        return tf.distribute.MirroredStrategy(
            devices=cpus[:cpu_replicas], cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    if cpu_replicas > 1:
        raise ValueError(f"train.cpu_replicas={cpu_replicas} needs --strategy mirrored (or default), not {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name in ("onedevice", "mirrored") and not gpus:
        raise ValueError(
            f"--strategy {name} found no GPU that TensorFlow can use (is the GPU build installed: "
            "make ... TF_EXTRA=gpu?); it would train on the CPU. Use --strategy default on a CPU, "
            "or train.cpu_replicas=N (--cpu-replicas N) to rehearse N replicas on the CPU"
        )
    if name == "onedevice":
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def describe_devices(strategy: tf.distribute.Strategy) -> str:
    """One line for the run log: the strategy, its replica count and devices."""
    try:
        devices = list(strategy.extended.worker_devices)
    except (RuntimeError, AttributeError):  # the default strategy: TensorFlow's placement
        gpus = tf.config.list_logical_devices("GPU")
        devices = [gpus[0].name if gpus else tf.config.list_logical_devices("CPU")[0].name]
    return (
        f"{type(strategy).__name__}: {strategy.num_replicas_in_sync} replica(s) on "
        f"{', '.join(devices) if devices else 'the default device'}"
    )


def _onednn_enabled() -> bool:
    """Whether TensorFlow's oneDNN kernels are on (they are what runs bf16 fast on a CPU)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # private API: if it moves, assume the stock x86 build (oneDNN on)
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") not in ("0", "false", "False")


def cpu_bf16_fast() -> bool:
    """True on an x86 CPU with native bfloat16 dot products (AVX512-BF16 or AMX-BF16)
    and TensorFlow's oneDNN kernels on: there ``mixed_bfloat16`` runs the GAN step
    1.9-2x faster than float32 (``benchmarks/train_step.py``)."""
    flags = _cpu_flags()
    return bool(flags & {"avx512_bf16", "amx_bf16"}) and _onednn_enabled()


def resolve_precision(precision: str) -> str:
    """Turns ``auto`` into a concrete policy name.

    ``auto`` picks ``mixed_float16`` with a GPU, ``mixed_bfloat16`` on a TPU or on a
    CPU with native bfloat16 arithmetic (:func:`cpu_bf16_fast`: AVX512-BF16 or AMX),
    and ``float32`` on other CPUs, where bfloat16 is emulated and slow.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if tf.config.list_logical_devices("TPU"):
        return "mixed_bfloat16"
    if tf.config.list_logical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_bf16_fast() else "float32"


def set_precision(precision: str) -> str:
    """Sets the global Keras dtype policy and returns the concrete policy name.

    Colour conversion and losses always compute in float32 (see
    :mod:`colourise_tf.colour`); models cast their outputs to float32.
    """
    policy = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_threads(strategy: str = "default", xla: bool = False) -> tuple[int, int]:
    """``(intra_op, inter_op)`` thread counts for ``configure_threads``'s auto setting.

    On a CPU-only host: two ops at a time (``inter_op = 2``), each on half the cores.
    The GAN step has that much independent work (D on real and on fake images; the G
    and D gradients), and oneDNN kernels split over fewer threads synchronise less:
    on the 2-core machine the step ran 1.01-1.14x faster with ``(1, 2)`` than with
    TensorFlow's default (both pools as wide as the machine) in float32 and bfloat16,
    with steadier step times (``benchmarks/train_step.py``, the ``threads`` rows).
    With a GPU, or for a TPU, TensorFlow's default ``(0, 0)`` is kept: there the host
    threads only feed devices; so it is with ``xla`` (the jit-compiled step is one op
    that parallelises inside: with one intra-op thread it ran 2x slower).
    """
    if xla or strategy == "tpu" or tf.config.list_physical_devices("GPU"):
        return 0, 0
    n = _cpu_count()
    return (max(1, n // 2), 2) if n >= 2 else (0, 0)


def configure_threads(
    intra_op: int | None = None, inter_op: int | None = None, strategy: str = "default", xla: bool = False
) -> tuple[int, int]:
    """Sets TensorFlow's intra-op and inter-op thread pools; returns what is in effect.

    ``None`` takes :func:`auto_threads`' value, ``0`` TensorFlow's own default, ``n``
    exactly ``n`` threads. The pools are fixed once TensorFlow has run an op; if that
    has already happened in this process (a notebook, the tests), the current pools
    are kept, with a warning when an explicit request could not be honoured.
    """
    auto_intra, auto_inter = auto_threads(strategy, xla)
    want = (auto_intra if intra_op is None else intra_op, auto_inter if inter_op is None else inter_op)
    current = (
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads(),
    )
    if want == current:
        return current
    try:
        tf.config.threading.set_intra_op_parallelism_threads(want[0])
        tf.config.threading.set_inter_op_parallelism_threads(want[1])
    except RuntimeError:
        if intra_op is not None or inter_op is not None:
            log.warning(
                "TensorFlow is already running: keeping %d intra-op / %d inter-op threads (asked for %d / %d)",
                *current,
                *want,
            )
        return current
    return want
