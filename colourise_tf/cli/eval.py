"""``colourise-eval`` / ``python -m colourise_tf.cli.eval``: evaluate models on a test split.

The evaluation itself is :func:`colourise_tf.evaluate.evaluate_models`; this module
parses the command line, checks the output folder before hours of work, and prints
and saves the tables.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from colourise_tf import evaluate, fileio
from colourise_tf.fileio import describe_os_error


class _ModelAction(argparse.Action):
    """``--model PATH`` appends a model; ``--name NAME`` names the latest one."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = getattr(namespace, "models", None) or []
        if option_string == "--model":
            items.append({"path": values, "name": None})
        else:
            if not items or items[-1]["name"] is not None:
                parser.error("--name must follow the --model it names (one --name per --model)")
            items[-1]["name"] = values
        namespace.models = items


def build_parser() -> argparse.ArgumentParser:
    """The ``colourise-eval`` argument parser."""
    p = argparse.ArgumentParser(
        prog="colourise-eval",
        description=(
            "Evaluate colourisation models (run directories, checkpoint prefixes, SavedModels, "
            ".tflite files) on a test split; writes evaluation.json, evaluation.md (Górriz et al. 2019 "
            "Table I, Tarrés 2021 Table 2) and ab_histograms.png to --out."
        ),
        epilog=(
            "example: colourise-eval --model runs/pix2pix --name pix2pix --model runs/gorriz-ibn-sn-md "
            "--dataset imagenet2012 --split gorriz-test --manual-dir /data/manual --out eval/"
        ),
    )
    p.add_argument(
        "--model",
        action=_ModelAction,
        dest="models",
        metavar="PATH",
        help="model to evaluate (repeatable): run dir, <run>/checkpoints/ckpt-N, SavedModel dir or .tflite",
    )
    p.add_argument(
        "--name",
        action=_ModelAction,
        dest="models",
        metavar="NAME",
        help="table row name of the preceding --model (default: its directory/file name)",
    )
    p.add_argument(
        "--dataset",
        default="samples",
        help="'samples' (embedded photos), a folder/glob of images, or a TFDS name (default: samples)",
    )
    p.add_argument("--split", default=None, help="TFDS split; default gorriz-test for imagenet2012, else test")
    p.add_argument("--data-dir", default=None, help="TFDS data directory")
    p.add_argument("--manual-dir", default=None, help="TFDS manual download directory (ImageNet tarballs)")
    p.add_argument(
        "--image-size", type=int, default=None, help="evaluation size for all models (default: each model's own size)"
    )
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--perceptual-weights",
        default="imagenet",
        metavar="imagenet|none|PATH",
        help="VGG19 weights for Lperc: imagenet (download), none (skip Lperc) or a local .h5",
    )
    p.add_argument(
        "--with-grey-baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the 'L only (grey)' reference row (default: on)",
    )
    p.add_argument("--no-discriminator", action="store_true", help="do not report discriminator accuracy")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise channel (stochastic models)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _check_out_dir(out: str) -> None:
    """Raises ``OSError`` if the folder ``out`` could not be created or written to.

    Nothing is created: ``out`` or its nearest existing ancestor must be a writable
    directory, and no ancestor may be a file. For a URI (``gs://``, ``ram://``) only
    the files are looked for (write access shows when writing); a bucket that cannot
    be read is an error here.
    """
    if fileio.is_remote(out):
        try:
            _check_remote_out_dir(fileio.normalize(out), out)
        except tf.errors.OpError as err:
            raise OSError(None, f"cannot be checked: {err.message}", out) from None
        return
    path = Path(fileio.normalize(out)).absolute()
    if path.exists():
        if not path.is_dir():
            raise NotADirectoryError(20, "exists and is not a directory", out)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable", out)
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(20, f"cannot be created: {parent} is not a directory", out)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(13, f"cannot be created: {parent} is not writable", out)


def _check_remote_out_dir(uri: str, out: str) -> None:
    """:func:`_check_out_dir` of a URI: neither it nor an ancestor is a file."""
    if fileio.exists(uri):
        if not fileio.isdir(uri):
            raise NotADirectoryError(20, "exists and is not a directory", out)
        return
    scheme, _, rest = uri.partition("://")
    parts = rest.rstrip("/").split("/")
    for i in range(len(parts) - 1, 0, -1):  # nearest existing ancestor (not the file system root)
        ancestor = f"{scheme}://{'/'.join(parts[:i])}"
        if fileio.exists(ancestor):
            if not fileio.isdir(ancestor):
                raise NotADirectoryError(20, f"cannot be created: {ancestor} is not a directory", out)
            return


def main(argv: Sequence[str] | None = None) -> int:
    """``colourise-eval`` entry point.

    Returns:
        0 on success, 2 on a usage problem (bad model path, missing dataset, VGG19
        weights unavailable) with the reason on stderr.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.models:
        parser.error("give at least one --model PATH")
    if args.batch_size < 1:
        parser.error("--batch-size must be positive")
    try:
        _check_out_dir(args.out)  # before hours of evaluation, not after
    except OSError as err:
        print(f"colourise-eval: error: --out {describe_os_error(err)}", file=sys.stderr)
        return 2
    try:
        perceptual = evaluate.load_perceptual(args.perceptual_weights)  # fail before loading models
        loaded = [
            evaluate.load_eval_model(m["path"], m["name"], with_discriminator=not args.no_discriminator)
            for m in args.models
        ]
        result = evaluate.evaluate_models(
            loaded,
            dataset=args.dataset,
            split=args.split,
            image_size=args.image_size,
            batch_size=args.batch_size,
            limit=args.limit,
            data_dir=args.data_dir,
            manual_dir=args.manual_dir,
            perceptual_weights=perceptual,
            grey_baseline=args.with_grey_baseline,
            seed=args.seed,
            progress=not args.no_progress,
        )
    except (evaluate.EvaluationError, FileNotFoundError) as err:
        print(f"colourise-eval: error: {err}", file=sys.stderr)
        return 2
    result.settings["argv"] = list(sys.argv[1:] if argv is None else argv)
    print(result.markdown())  # first: the tables are on stdout even if saving fails
    try:
        paths = result.save(args.out)
    except OSError as err:
        print(f"colourise-eval: error: cannot save the results: {describe_os_error(err)}", file=sys.stderr)
        return 1
    except tf.errors.OpError as err:  # a URI --out: tf.io.gfile's errors
        print(f"colourise-eval: error: cannot save the results: {args.out}: {err.message}", file=sys.stderr)
        return 1
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
