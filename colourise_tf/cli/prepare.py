"""``colourise-prepare`` / ``python -m colourise_tf.cli.prepare``: decode a dataset once
into prepared shards (:func:`colourise_tf.prepare.prepare_shards`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from colourise_tf import data as data_lib
from colourise_tf import shards as shards_lib
from colourise_tf.prepare import EXAMPLES_PER_SHARD, default_short_side, prepare_shards


def build_parser() -> argparse.ArgumentParser:
    """The ``colourise-prepare`` argument parser."""
    p = argparse.ArgumentParser(
        prog="colourise-prepare",
        description="Decode and resize an image source once into TFRecord shards for fast training "
        "(train with --dataset OUT).",
    )
    p.add_argument("source", help="TFDS name (imagenet2012, ...), folder, glob, or 'samples'")
    p.add_argument("out", help="new output folder (local path or gs://..., any tf.io.gfile path)")
    p.add_argument("--split", default="train", help="TFDS split, or gorriz-train (default: train)")
    p.add_argument("--image-size", type=int, default=256, help="training crop the shards are for (default 256)")
    p.add_argument(
        "--short-side",
        type=int,
        default=None,
        help="shorter side of the stored images (default: round(1.15 * image size))",
    )
    p.add_argument(
        "--shards", type=int, default=None, help=f"number of shard files (default: one per {EXAMPLES_PER_SHARD} images)"
    )
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95, 4:4:4 chroma)")
    p.add_argument(
        "--encoding",
        choices=shards_lib.ENCODINGS,
        default="jpeg",
        help="jpeg (default; small) or raw pixels (about 4x larger, nothing to decode when training)",
    )
    p.add_argument("--data-dir", default=None, help="TFDS data directory")
    p.add_argument("--manual-dir", default=None, help="TFDS manual download directory (ImageNet tarballs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    short = default_short_side(args.image_size) if args.short_side is None else args.short_side
    try:
        info = prepare_shards(
            args.source,
            args.out,
            split=args.split,
            short_side=short,
            num_shards=args.shards,
            quality=args.quality,
            encoding=args.encoding,
            data_dir=args.data_dir,
            manual_dir=args.manual_dir,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, FileExistsError, ValueError, data_lib.DatasetUnavailableError) as err:
        print(f"colourise-prepare: error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {info['num_examples']} images in {len(info['files'])} shard(s) to {args.out} "
        f"(shorter side {short}; {len(info['grey_left_out'])} grey left out, {len(info['skipped'])} skipped). "
        f"Train with: colourise-train --dataset {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
