"""``colourise-train`` / ``python -m colourise_tf.cli.train``: the main job.

Examples::

    colourise-train --preset gorriz-ibn-sn-md --dataset samples --workdir runs/demo \\
        model.image_size=128 train.steps=300
    colourise-train --preset gorriz-ibn-sn-md --dataset imagenet2012 --split gorriz-train \\
        --data-dir /data/tfds --manual-dir /data/imagenet --strategy mirrored
    colourise-train --preset tiny --strategy mirrored --cpu-replicas 8 data.batch_size=16
    colourise-train --list-presets
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import traceback

# TensorFlow's C++ start-up chatter is noise for CLI users (set it to 0 to see it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from colourise_tf import config as config_lib  # noqa: E402
from colourise_tf.config import PRECISIONS, STRATEGIES  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="colourise-train",
        description="Train a colourisation GAN preset (resumes from WORKDIR if it holds a checkpoint).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Overrides are section.field=value, e.g. train.steps=500 model.num_scales=1 "
        "data.batch_size=8 loss.adversarial=least_squares.",
    )
    p.add_argument("--preset", default="gorriz-ibn-sn-md", help="preset name (see --list-presets)")
    p.add_argument(
        "--dataset",
        help="'samples', a TFDS name (imagenet2012, cifar10, ...), a folder/glob, or a folder of prepared shards",
    )
    p.add_argument("--split", help="dataset split (imagenet2012: gorriz-train / gorriz-test too)")
    p.add_argument("--data-dir", help="TFDS data_dir")
    p.add_argument("--manual-dir", help="TFDS manual_dir (ImageNet tarballs)")
    p.add_argument(
        "--workdir",
        default=None,
        help="run directory: a path or a URI TensorFlow writes, e.g. gs://bucket/run (default runs/<preset>)",
    )
    p.add_argument("--strategy", choices=STRATEGIES, help="tf.distribute strategy")
    p.add_argument(
        "--cpu-replicas",
        type=int,
        metavar="N",
        help="split the CPU into N logical devices and train on them as N replicas (mirrored), "
        "to rehearse a multi-replica run (same as train.cpu_replicas=N)",
    )
    p.add_argument("--precision", choices=PRECISIONS, help="dtype policy; auto picks per device")
    p.add_argument("--steps", type=int, help="total training steps (same as train.steps=N)")
    p.add_argument(
        "--steps-per-loop",
        type=int,
        metavar="N",
        help="training steps per tf.function call (same as train.steps_per_loop=N; TPUs want 10s-100s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list-presets", action="store_true", help="list presets and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return p


def _override_key(override: str) -> str:
    """``"section.field"`` of a ``section.field=value`` override (spaces allowed)."""
    return override.split("=", 1)[0].strip()


def _check_flag_agrees(cfg, flag: str, key: str, value, overrides) -> None:
    """Raises ``ValueError`` when a ``key=value`` override sets ``flag``'s field to
    something else (e.g. ``--steps 5 train.steps=6``): neither silently wins."""
    section, field = key.split(".")
    want = getattr(getattr(config_lib.apply_overrides(cfg, [f"{key}={value}"]), section), field)
    for override in overrides:
        if _override_key(override) != key:
            continue
        got = getattr(getattr(config_lib.apply_overrides(cfg, [override]), section), field)
        if got != want:
            raise ValueError(f"{flag} {value} and {override.strip()} disagree: give one of them")


def resolve_config(args: argparse.Namespace) -> config_lib.ExperimentConfig:
    """Preset + command-line flags + ``key=value`` overrides -> one config."""
    cfg = config_lib.get_preset(args.preset)
    overrides = []
    for flag, key in (
        ("dataset", "data.dataset"),
        ("split", "data.split"),
        ("data_dir", "data.data_dir"),
        ("manual_dir", "data.manual_dir"),
        ("strategy", "train.strategy"),
        ("cpu_replicas", "train.cpu_replicas"),
        ("precision", "train.precision"),
        ("steps", "train.steps"),
        ("steps_per_loop", "train.steps_per_loop"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
            _check_flag_agrees(cfg, f"--{flag.replace('_', '-')}", key, value, args.overrides)
    overrides += list(args.overrides)
    resolved = config_lib.apply_overrides(cfg, overrides)
    keys = {_override_key(o) for o in overrides}
    split_given = args.split is not None or "data.split" in keys
    eval_given = "data.eval_split" in keys
    if resolved.data.dataset != cfg.data.dataset and cfg.data.split.startswith("gorriz-"):
        # The gorriz-* splits are ImageNet's protocol (Górriz et al. 2019/002): another dataset
        # (--dataset or data.dataset=) trains on its own train split unless a split is given.
        extra = ([] if split_given else ["data.split=train"]) + ([] if eval_given else ["data.eval_split=none"])
        resolved = config_lib.apply_overrides(resolved, extra)
    return resolved


def _fail(exc: BaseException, code: int) -> int:
    """Prints ``exc`` as one ``colourise-train:`` line and returns ``code``.

    The exception's frames are dropped and garbage collected before returning: a tf.data
    iterator they keep alive until interpreter exit can hang the process there
    (tensorflow#21277).
    """
    import tensorflow as tf

    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if isinstance(exc, tf.errors.OpError):
        message = message.splitlines()[0]
    print(f"colourise-train: {message}", file=sys.stderr)
    traceback.clear_frames(exc.__traceback__)
    gc.collect()
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    # Intermixed: key=value overrides may come before, between or after the options.
    args = build_parser().parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # absl's INFO records (e.g. "Sharding callback duration" at every checkpoint) would
    # break the progress bar's line.
    logging.getLogger("absl").setLevel(logging.WARNING)
    if args.list_presets:
        for name in config_lib.list_presets():
            description = config_lib.get_preset(name).description
            print(f"{name:22s} {description.split('. ')[0] if description else ''}")
        return 0
    try:
        cfg = resolve_config(args)
        from colourise_tf.models import check_image_size  # imports Keras: after --help / --list-presets

        check_image_size(cfg.model)
    except ValueError as exc:
        return _fail(exc, 2)
    workdir = args.workdir or f"runs/{cfg.name}"
    import tensorflow as tf  # heavy imports after parsing

    from colourise_tf import data as data_lib
    from colourise_tf.training.loop import NonFiniteLossError, run_training

    try:
        result = run_training(cfg, workdir, progress=not args.no_progress)
    except NonFiniteLossError as exc:
        return _fail(exc, 3)
    except (FileNotFoundError, ValueError, data_lib.NoUsableImagesError, tf.errors.NotFoundError) as exc:
        # Bad settings found while starting: strategy, data location, resume mismatch...
        return _fail(exc, 2)
    except Exception as exc:  # noqa: BLE001 -- e.g. TFDS failing to download offline
        traceback.print_exc()
        return _fail(exc, 1)
    print(
        f"{'stopped' if result.interrupted else 'finished'} at step {result.final_step} "
        f"({result.images_per_second:.2f} images/s); run directory: {workdir}\n"
        f"  samples grid: {workdir}/samples.png   TensorBoard: tensorboard --logdir {workdir}/logs"
    )
    if result.skipped_files:
        print(f"  {len(result.skipped_files)} unreadable file(s) skipped: see {workdir}/summary.json")
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
