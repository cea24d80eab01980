"""The training run: data, checkpoints, pre-emption, TensorBoard, progress.

A run directory holds::

    config.json        the resolved configuration (preset + overrides)
    checkpoints/       tf.train.CheckpointManager (models, optimisers, step, iterator)
    logs/              TensorBoard event files
    samples.png        grey | generated | real grid written at the end of the run
    summary.json       final step, losses and throughput

A run resumes from the latest checkpoint in its directory. SIGTERM / SIGINT
(pre-emption, Ctrl-C) finish the current step, write a checkpoint and stop. A NaN
or Inf loss stops the run with :class:`NonFiniteLossError` before anything is
saved, so the last checkpoint stays the last good one.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from colourise_tf import data as data_lib
from colourise_tf import fileio
from colourise_tf.config import ExperimentConfig, flat_dict, save_config, validate_for_training
from colourise_tf.fileio import atomic_write_text, atomic_writer
from colourise_tf.formats import run_dir as run_dir_format
from colourise_tf.ops import cpu_only

from .runtime import configure_cpu_replicas, configure_threads, describe_devices, make_strategy, set_precision
from .trainer import GANTrainer

log = logging.getLogger("colourise_tf.training")


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or Inf; the message names the step and the loss."""


@dataclass
class RunResult:
    """What a finished (or interrupted) run reports."""

    workdir: str
    start_step: int
    final_step: int
    interrupted: bool = False
    images_per_second: float = 0.0
    last_metrics: dict = field(default_factory=dict)
    skipped_files: list = field(default_factory=list)
    grey_files: list = field(default_factory=list)


class _StopFlag:
    """Turns SIGTERM/SIGINT into a flag checked between steps.

    ``signals``: the ones to catch (multi-worker runs leave SIGTERM to
    :class:`tf.distribute.experimental.PreemptionCheckpointHandler`).
    """

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self.signum: int | None = None
        self._signals = tuple(signals)
        self._old = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("signal %d received: finishing the step and writing a checkpoint", signum)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def image_grid(grey, fake, real) -> np.ndarray:
    """Stacks rows of ``grey | generated | real`` into one uint8 image."""
    rows = [np.concatenate([g, f, r], axis=1) for g, f, r in zip(grey, fake, real)]
    grid = np.concatenate(rows, axis=0)
    return np.round(np.clip(grid, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png_atomic(array: np.ndarray, path: str) -> None:
    """Writes a uint8 image as PNG via a temporary file and a rename."""
    from PIL import Image

    with atomic_writer(path, "wb") as f:
        Image.fromarray(array).save(f, format="PNG")


class _Preempted(Exception):
    """Raised by the pre-emption handler's exit function once every worker has saved."""


def _preemption_handler(strategy: tf.distribute.Strategy, ckpt: tf.train.Checkpoint, run_dir: str):
    """A ``PreemptionCheckpointHandler`` for a multi-worker run (``None`` otherwise).

    When any worker gets SIGTERM (a pre-empted VM), the handler agrees with the others
    on a step, every worker saves a checkpoint after it, and its exit function (ours
    raises :class:`_Preempted`) ends the loop, which then writes the summary and exits
    with code 130; a restart resumes from that checkpoint. Every worker reads the run's
    ``checkpoints/`` (so all agree on the handler's step count); the chief writes
    there (keeping only that last checkpoint), the others into the handler's
    ``workertemp_<i>/`` folders, which the run removes at its end.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return None
    if not resolver.cluster_spec().jobs:
        return None

    def exit_fn():
        raise _Preempted()

    config = tf.distribute.experimental.TerminationConfig(exit_fn=exit_fn)
    return tf.distribute.experimental.PreemptionCheckpointHandler(
        resolver, ckpt, checkpoint_dir=run_dir_format.checkpoint_dir(run_dir), termination_config=config
    )


def _worker_role(strategy: tf.distribute.Strategy) -> tuple[bool, str]:
    """(is_chief, suffix) for multi-worker runs; single-process runs are the chief.

    Every worker must take part in a multi-worker checkpoint save, but only the
    chief writes into the run directory; the others write to a scratch directory
    that is deleted afterwards.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None):
        return True, ""
    task_type, task_id = resolver.task_type, resolver.task_id
    cluster = resolver.cluster_spec().as_dict() if resolver.cluster_spec() else {}
    if task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and "chief" not in cluster):
        return True, ""
    return False, f"{task_type}_{task_id}"


def _iterator_is_checkpointable(dataset: tf.data.Dataset) -> bool:
    """Probes whether tf.data can save this pipeline's iterator (not if it wraps Python)."""
    try:
        it = iter(dataset.take(1))
        with tempfile.TemporaryDirectory() as tmp:
            tf.train.Checkpoint(it=it).write(os.path.join(tmp, "probe"))
        return True
    except (tf.errors.OpError, ValueError, TypeError) as exc:
        log.info("input iterator is not checkpointable (%s); resume will skip batches", exc)
        return False


class ResumeMismatchError(ValueError):
    """The run directory was trained with settings a resume cannot change."""


# Settings a resume may change: where the data lives and what is only read, never
# learnt or iterated (and every train.* / loss.* / optim.* setting). The rest of
# model.* shapes the checkpoint, and the rest of data.* the saved input iterator.
_RESUME_FREE = {("data", "data_dir"), ("data", "manual_dir"), ("data", "eval_split")}


def check_resume_compatible(run_dir: str, cfg: ExperimentConfig, latest: str) -> None:
    """Raises :class:`ResumeMismatchError` if ``cfg`` cannot resume ``run_dir`` from
    its checkpoint ``latest``.

    Resuming restores the models, optimisers and input iterator of the latest
    checkpoint, so ``model.*`` and ``data.*`` (but the data's location) must be those
    of the run's ``config.json``. Loss, optimiser and loop settings may change: the
    new learning rates apply from the resumed step. Nothing is written here.
    """
    from colourise_tf.config import load_config

    path = run_dir_format.config_path(run_dir)
    if not fileio.exists(path):
        return  # checkpoints from elsewhere: nothing to compare with
    try:
        before = flat_dict(load_config(path))
    except ValueError as exc:
        raise ResumeMismatchError(f"cannot resume {run_dir}: {exc}") from None
    diffs = [
        f"{key}: {before.get(key)!r} -> {value!r}"
        for key, value in flat_dict(cfg).items()
        if key.split(".", 1)[0] in ("model", "data")
        and tuple(key.split(".", 1)) not in _RESUME_FREE
        and before.get(key) != value
    ]
    if diffs:
        raise ResumeMismatchError(
            f"cannot resume {run_dir} (trained up to {latest}) "
            f"with different model or data settings: {'; '.join(diffs)}. Use the run's own settings "
            "(see its config.json) or a new --workdir"
        )


def _steps_this_call(step: int, end_step: int, tc, trainer: GANTrainer) -> int:
    """Steps of the next ``train_loop`` call: up to ``train.steps_per_loop``, ending at the
    next log, image or checkpoint step, the end, or the end of segmentation pre-training."""
    n = min(tc.steps_per_loop, end_step - step)
    for every in (tc.log_every, tc.image_every, tc.checkpoint_every):
        n = min(n, every - step % every)
    if trainer.seg_pretrain_steps and step < trainer.seg_pretrain_steps:
        n = min(n, trainer.seg_pretrain_steps - step)
    return max(n, 1)


def _raise_if_nonfinite(pending: list, workdir: str) -> None:
    """Raises :class:`NonFiniteLossError` for the first call in ``pending`` whose steps
    had a NaN/Inf metric (nothing has been saved after it)."""
    for bad in pending:
        bad_step = int(bad["step"])
        if bad_step < 0:
            continue
        values = {k: float(v) for k, v in bad.items() if k != "step"}
        names = [k for k, v in values.items() if not np.isfinite(v)]
        raise NonFiniteLossError(
            f"non-finite {', '.join(names)} at step {bad_step} (values "
            f"{', '.join(f'{k}={values[k]}' for k in names)}); the last good "
            f"checkpoint in {run_dir_format.checkpoint_dir(workdir)} was left untouched"
        )


def _save_if_finite(manager: tf.train.CheckpointManager, trainer: GANTrainer, step: int) -> None:
    """Saves a checkpoint, unless a weight became NaN/Inf (the last one then stays the last good one)."""
    if not trainer.all_weights_finite():
        raise NonFiniteLossError(
            f"non-finite weights after step {step} (the losses were finite: check the learning "
            f"rates and loss weights); no checkpoint was written for it, the last good one in "
            f"{manager.directory} was left untouched"
        )
    manager.save(checkpoint_number=step)


def _split_over_replicas(strategy: tf.distribute.Strategy, batch):
    """A host batch as per-replica values: consecutive slices, one per replica.

    The same split ``experimental_distribute_dataset`` makes of a global batch (the
    first ``ceil`` share to the first replicas when it does not divide evenly), each
    slice copied to its replica's device.
    """
    n = strategy.num_replicas_in_sync
    devices = strategy.extended.worker_devices

    def value_fn(ctx):
        i = ctx.replica_id_in_sync_group

        def piece(t):
            bounds = _slice_bounds(int(tf.shape(t)[0]), n)
            with tf.device(devices[i]):
                return tf.identity(t[bounds[i] : bounds[i + 1]])

        return tf.nest.map_structure(piece, batch)

    return strategy.experimental_distribute_values_from_function(value_fn)


def _slice_bounds(size: int, n: int) -> list[int]:
    """Bounds of ``n`` consecutive slices of ``size``; the first ``size % n`` get one more."""
    sizes = [size // n + (1 if j < size % n else 0) for j in range(n)]
    return [sum(sizes[:j]) for j in range(n + 1)]


def _has_iterator(checkpoint: str) -> bool:
    """Whether a checkpoint holds an input iterator (multi-worker and TPU runs do not)."""
    # The reader itself: tf.train.load_checkpoint takes a prefix that TensorFlow's ram://
    # file system reports as a directory for one, and fails there.
    names = tf.compat.v1.train.NewCheckpointReader(checkpoint).get_variable_to_shape_map()
    return any(name.startswith("iterator/") for name in names)


def input_mode(strategy: tf.distribute.Strategy, cfg: ExperimentConfig) -> str:
    """How ``strategy``'s replicas get their input (``train.input_distribution``).

    * ``plain``: one replica under the default strategy: the tf.data iterator itself.
    * ``per_replica``: ``strategy.distribute_datasets_from_function``: each worker
      builds its own pipeline over its own files, batched at the per-replica size
      and prefetched to the devices. Needs a global batch that divides evenly.
    * ``host``: single-host strategies: one global batch per step from a tf.data
      iterator on the host, sliced per replica on the host (so each device gets only
      its slice), any split (the first replicas take one image more).

    ``auto`` picks ``per_replica`` when the batch divides evenly, else ``host`` (and
    ``plain`` for the default strategy).
    """
    wanted = cfg.train.input_distribution
    replicas = strategy.num_replicas_in_sync
    if type(strategy).__name__ == "_DefaultDistributionStrategy":  # what get_strategy() gives outside any scope
        return "plain"
    single_host = isinstance(strategy, (tf.distribute.OneDeviceStrategy, tf.distribute.MirroredStrategy))
    even = cfg.data.batch_size % replicas == 0
    if wanted == "host" or (wanted == "auto" and not even):
        if not single_host:
            raise ValueError(
                f"data.batch_size={cfg.data.batch_size} over {replicas} replicas on several workers or a TPU "
                f"needs per-replica input, so the global batch must be a multiple of {replicas}"
                + ("" if wanted == "auto" else "; train.input_distribution=host is for one host")
            )
        return "host"
    if not even:
        raise ValueError(
            f"train.input_distribution=per_replica needs data.batch_size ({cfg.data.batch_size}) to be a "
            f"multiple of the {replicas} replicas (or use auto/host)"
        )
    return "per_replica"


def _build_train_dataset(
    cfg: ExperimentConfig, report, input_context: tf.distribute.InputContext | None = None, skip_batches: int = 0
) -> tf.data.Dataset:
    """The training pipeline: the global batch, or with ``input_context`` this input
    pipeline's per-replica batches over its own files."""
    d = cfg.data
    validate_for_training(cfg)
    return data_lib.build_dataset(
        d.dataset,
        split=d.split,
        image_size=cfg.model.image_size,
        batch_size=input_context.get_per_replica_batch_size(d.batch_size) if input_context else d.batch_size,
        training=True,
        seed=d.seed,
        deterministic=d.deterministic,
        cache=d.cache,
        shuffle_buffer=d.shuffle_buffer,
        data_dir=d.data_dir,
        manual_dir=d.manual_dir,
        masks=cfg.model.mask_channel,
        segmentation_key=d.segmentation_key,
        augment=d.augment,
        report=report,
        input_context=input_context,
        skip_batches=skip_batches,
        resize_on_device=d.resize_on_device == "on" or (d.resize_on_device == "auto" and not cpu_only()),
    )


def _build_preview_batch(cfg: ExperimentConfig, n: int = 4):
    d = cfg.data
    ds = data_lib.build_dataset(
        d.dataset,
        split=d.eval_split or d.split,
        image_size=cfg.model.image_size,
        batch_size=n,
        training=False,
        seed=d.seed,
        data_dir=d.data_dir,
        manual_dir=d.manual_dir,
        masks=cfg.model.mask_channel,
        segmentation_key=d.segmentation_key,
    )
    return next(iter(ds))


def _lr(optimizer) -> float:
    # tf.convert_to_tensor reads Keras, mirrored and TPU variables alike.
    return float(tf.convert_to_tensor(optimizer.learning_rate).numpy())


def _write_summaries(writer, trainer: GANTrainer, metrics: dict, step: int, ips: float):
    with writer.as_default(step=step):
        for name, value in metrics.items():
            tf.summary.scalar(name, value)
        tf.summary.scalar("throughput/images_per_second", ips)
        tf.summary.scalar("lr/generator", _lr(trainer.g_opt))
        if trainer.d_opt is not None:
            tf.summary.scalar("lr/discriminator", _lr(trainer.d_opt))


def _write_images(writer, trainer: GANTrainer, preview, step: int) -> np.ndarray:
    grey, fake, real = trainer.colourise_batch(preview["image"])
    grid = image_grid(grey.numpy(), fake.numpy(), real.numpy())
    from colourise_tf import colour

    space = trainer.cfg.model.colour_space
    _, fake_chroma = colour.rgb_to_model(fake, space)
    _, real_chroma = colour.rgb_to_model(real, space)
    scale = colour.AB_SCALE if space == "lab" else 1.0
    with writer.as_default(step=step):
        tf.summary.image("samples/grey|generated|real", grid[None], max_outputs=1)
        for i, ch in enumerate(("a", "b") if space == "lab" else ("u", "v")):
            tf.summary.histogram(f"chroma/{ch}_generated", fake_chroma[..., i] * scale)
            tf.summary.histogram(f"chroma/{ch}_real", real_chroma[..., i] * scale)
    return grid


def run_training(
    cfg: ExperimentConfig,
    workdir: str | os.PathLike,
    *,
    strategy: str | tf.distribute.Strategy | None = None,
    precision: str | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    feature_model=None,
) -> RunResult:
    """Trains (or resumes) ``cfg`` in ``workdir``.

    Args:
        cfg: resolved configuration; written to ``workdir/config.json``.
        workdir: run directory (created); a local path or a URI of any file system
            TensorFlow writes (``gs://bucket/run``, ``ram://``; ``file:///x`` is ``/x``).
        strategy: name (see :func:`colourise_tf.training.runtime.make_strategy`) or a strategy
            object; defaults to ``cfg.train.strategy``.
        precision: policy name or ``auto``; defaults to ``cfg.train.precision``.
        max_steps: stop after this many steps in THIS process (the schedule still
            ends at ``cfg.train.steps``); used to simulate pre-emption in tests.
        progress: show a progress bar.
        feature_model: optional prebuilt feature-reconstruction loss (tests).

    Returns:
        A :class:`RunResult`.

    Raises:
        NonFiniteLossError: a loss became NaN/Inf (no checkpoint is written for it).
    """
    import keras

    # The dtype policy is process-global: restore it, so that training in-process (a
    # notebook, the tests) does not change how later models are built.
    previous_policy = keras.mixed_precision.global_policy()
    try:
        return _run_training(
            cfg,
            workdir,
            strategy=strategy,
            precision=precision,
            max_steps=max_steps,
            progress=progress,
            feature_model=feature_model,
        )
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _run_training(
    cfg: ExperimentConfig,
    workdir: str | os.PathLike,
    *,
    strategy=None,
    precision=None,
    max_steps=None,
    progress=True,
    feature_model=None,
) -> RunResult:
    workdir = run_dir = fileio.normalize(workdir)
    tc = cfg.train
    strategy_name = strategy if isinstance(strategy, str) else tc.strategy
    if not isinstance(strategy, tf.distribute.Strategy) and strategy_name in ("multiworker", "tpu"):
        # Multi-worker collectives must be configured before anything starts TensorFlow
        # (resolving the precision lists devices); the TPU must be connected before its
        # devices are listed.
        strategy = make_strategy(strategy_name, cpu_replicas=tc.cpu_replicas)
    threads = configure_threads(tc.intra_op_threads, tc.inter_op_threads, strategy_name, xla=tc.xla)
    log.info("TensorFlow CPU threads: %d intra-op, %d inter-op (0: TensorFlow's default)", *threads)
    if not isinstance(strategy, tf.distribute.Strategy):
        configure_cpu_replicas(tc.cpu_replicas)  # after the thread pools, before TensorFlow starts
    policy = set_precision(precision or tc.precision)
    if not isinstance(strategy, tf.distribute.Strategy):
        strategy = make_strategy(strategy or tc.strategy, cpu_replicas=tc.cpu_replicas)
    log.info(
        "%s; global batch %d (data.batch_size); precision %s; CPU-only kernels: %s",
        describe_devices(strategy),
        cfg.data.batch_size,
        policy,
        tc.cpu_kernels,
    )
    is_chief, scratch = _worker_role(strategy)
    if not is_chief:
        workdir = fileio.join(workdir, f".scratch_{scratch}")
    latest = tf.train.latest_checkpoint(run_dir_format.checkpoint_dir(run_dir))
    if latest:
        check_resume_compatible(run_dir, cfg, latest)
    if tc.deterministic_ops or os.environ.get("TF_DETERMINISTIC_OPS") == "1":
        tf.config.experimental.enable_op_determinism()
    if tc.seed is not None:
        import keras

        keras.utils.set_random_seed(tc.seed)

    trainer = GANTrainer(cfg, strategy, precision=policy, feature_model=feature_model)
    report = data_lib.PipelineReport()
    mode = input_mode(strategy, cfg)
    ckpt_objects = trainer.checkpoint_objects()
    # Non-chief workers restore from the chief's checkpoints and save to scratch.
    start_step = 0
    if latest:
        # Models, optimisers and step first: the step decides how the iterator resumes.
        tf.train.Checkpoint(**ckpt_objects).read(latest).expect_partial()
        start_step = int(trainer.step.numpy())
        log.info("resuming %s from step %d", latest, start_step)
    # How the replicas get their input (see :func:`input_mode`). Plain and host-split
    # iterators are tf.data iterators, saved in checkpoints (exact resume); the
    # distributed iterators of per-replica input are not Trackable (tensorflow#56372),
    # so a resumed run rebuilds its pipelines and skips what they had already read
    # (same seeded order; prepared shards skip their records before decoding).
    if mode == "per_replica":
        contexts = []

        def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            contexts.append(ctx)
            # This pipeline feeds num_replicas / num_pipelines replicas, one batch each per step.
            skip = start_step * ctx.num_replicas_in_sync // ctx.num_input_pipelines
            return _build_train_dataset(cfg, report, ctx, skip_batches=skip)

        iterator = iter(
            strategy.distribute_datasets_from_function(
                dataset_fn, tf.distribute.InputOptions(experimental_fetch_to_device=True)
            )
        )
        iterator_saved = restore_iterator = False
        log.info(
            "input: per replica (pipeline %d of %d on this worker), batches of %d per replica",
            contexts[0].input_pipeline_id + 1,
            contexts[0].num_input_pipelines,
            cfg.data.batch_size // strategy.num_replicas_in_sync,
        )
    else:
        saved_iterator = latest is not None and _has_iterator(latest)
        dataset = _build_train_dataset(cfg, report, skip_batches=0 if saved_iterator else start_step)
        iterator_saved = _iterator_is_checkpointable(dataset)
        restore_iterator = iterator_saved and saved_iterator
        if saved_iterator and not restore_iterator:
            dataset = _build_train_dataset(cfg, report, skip_batches=start_step)
        iterator = iter(dataset)
        if mode == "host":
            log.info(
                "input: global batches of %d split over %d replicas on the host",
                cfg.data.batch_size,
                strategy.num_replicas_in_sync,
            )
    # Created and written once the run is known to start (bad settings or data leave no
    # empty directory, a rejected resume leaves the old config).
    fileio.makedirs(workdir)
    save_config(cfg, run_dir_format.config_path(workdir))
    if iterator_saved:
        ckpt_objects = dict(ckpt_objects, iterator=iterator)
    ckpt = tf.train.Checkpoint(**ckpt_objects)
    if restore_iterator:
        ckpt.read(latest).expect_partial()
    if latest:
        trainer.set_learning_rates_from_config()  # the new config's, not the saved ones
    if start_step:
        log.info(
            "input resumes %s",
            "from the iterator saved in the checkpoint"
            if restore_iterator
            else f"by skipping the first {start_step} steps' batches (same seeded order)",
        )
    manager = tf.train.CheckpointManager(ckpt, run_dir_format.checkpoint_dir(workdir), max_to_keep=tc.keep_checkpoints)

    preemption = _preemption_handler(strategy, ckpt, run_dir)
    if preemption is not None and latest:
        trainer.set_learning_rates_from_config()  # the handler restored the saved ones again
    writer = tf.summary.create_file_writer(run_dir_format.logs_dir(workdir))
    preview = _build_preview_batch(cfg)
    total = tc.steps
    end_step = total if max_steps is None else min(total, start_step + max_steps)
    result = RunResult(workdir, start_step, start_step)
    bar = tqdm(total=total, initial=start_step, disable=not progress, unit="step", dynamic_ncols=True)
    images_per_step = cfg.data.batch_size
    t_window, n_window = time.perf_counter(), 0
    ips = 0.0
    step = start_step
    grid, grid_step = None, None
    metrics_np: dict = {}
    pending: list = []  # non-finite reports of the calls since the last check
    try:
        with _StopFlag(signals=(signal.SIGINT,) if preemption else (signal.SIGTERM, signal.SIGINT)) as stop:
            first_call = True
            while step < end_step:
                n = _steps_this_call(step, end_step, tc, trainer)
                metrics, nonfinite = trainer.train_loop(iterator, n, host_split=mode == "host")
                step += n
                pending.append(nonfinite)
                n_window += n
                bar.update(n)
                if preemption is not None:
                    try:
                        preemption.save_checkpoint_if_preempted(checkpoint_number=step)
                    except _Preempted:
                        _raise_if_nonfinite(pending, workdir)
                        result.interrupted = True
                        log.warning("pre-empted: every worker saved a checkpoint at step %d", step)
                        break
                if first_call:
                    # The first call of a process traces (and compiles) the step function:
                    # its rate only stands in until a window of ordinary steps is measured.
                    ips = n * images_per_step / max(time.perf_counter() - t_window, 1e-9)
                    t_window, n_window = time.perf_counter(), 0
                    first_call = False
                log_now = step % tc.log_every == 0 or step == end_step
                save_now = step % tc.checkpoint_every == 0 or step == end_step
                if log_now or save_now or stop.signum is not None or step % tc.image_every == 0:
                    # Metrics leave the device here only (reading them waits for the steps).
                    _raise_if_nonfinite(pending, workdir)
                    pending.clear()
                if log_now:
                    metrics_np = {k: float(v) for k, v in metrics.items()}
                    if n_window:
                        ips = n_window * images_per_step / max(time.perf_counter() - t_window, 1e-9)
                    t_window, n_window = time.perf_counter(), 0
                    _write_summaries(writer, trainer, metrics_np, step, ips)
                    bar.set_postfix(
                        g=f"{metrics_np.get('loss/g_total', 0):.3f}",
                        d=f"{metrics_np.get('loss/d_total', float('nan')):.3f}",
                        img_s=f"{ips:.2f}",
                    )
                if step % tc.image_every == 0:
                    grid, grid_step = _write_images(writer, trainer, preview, step), step
                if save_now or stop.signum is not None:  # read here: a signal may come at any time
                    _raise_if_nonfinite(pending, workdir)
                    pending.clear()
                    _save_if_finite(manager, trainer, step)
                if stop.signum is not None:
                    result.interrupted = True
                    log.warning("stopped by signal %d at step %d; checkpoint written", stop.signum, step)
                    break
    finally:
        bar.close()
        writer.flush()

    if grid_step != step:
        grid = _write_images(writer, trainer, preview, step)
    writer.flush()
    write_png_atomic(grid, run_dir_format.samples_path(workdir))
    result.final_step = step
    result.images_per_second = ips
    result.last_metrics = metrics_np
    result.skipped_files = list(report.skipped)
    result.grey_files = list(report.grey)
    summary = {
        "preset": cfg.name,
        "start_step": start_step,
        "final_step": step,
        "interrupted": result.interrupted,
        "images_per_second": ips,
        "precision": policy,
        "replicas": strategy.num_replicas_in_sync,
        "last_metrics": metrics_np,
        "skipped_files": [list(x) for x in report.skipped],
        "grey_files_left_out": list(report.grey),
    }
    atomic_write_text(run_dir_format.summary_path(workdir), json.dumps(summary, indent=2) + "\n")
    if report.skipped or report.grey:
        log.warning(report.summary())
    if not is_chief:
        fileio.rmtree(workdir)
        if preemption is not None:
            fileio.rmtree(fileio.join(run_dir, f"workertemp_{strategy.cluster_resolver.task_id}"))
    return result
