"""``colourise-export``: SavedModel (TF Serving) and TFLite exports of a training run.

    colourise-export savedmodel runs/tiny --base-dir exports/colourise
    colourise-export savedmodel runs/tiny/checkpoints/ckpt-20 --base-dir exports/colourise \\
        --version 7 --output-format jpeg --max-pixels 20000000 --model-name colourise
    colourise-export tflite runs/tiny --out-dir exports/tflite --variants float32,int8

``savedmodel`` writes ``<base-dir>/<version>/`` (next free integer unless
``--version``) and ``<base-dir>/models.config``; ``tflite`` writes
``<out-dir>/<name>_<variant>.tflite`` and ``<out-dir>/<name>.json``. Both print
what they wrote. Exit status 2 on bad arguments or an unusable run directory.

The run directory, ``--base-dir`` and ``--out-dir`` may be URIs of any file system
TensorFlow knows (``gs://bucket/models/colourise``; ``file:///x`` is the local ``/x``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def _positive_int(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    from colourise_tf.serving import savedmodel, tflite

    parser = argparse.ArgumentParser(
        prog="colourise-export",
        description="Export a colourise_tf training run for TF Serving (SavedModel) or devices (TFLite).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sm = sub.add_parser("savedmodel", help="SavedModel with serving signatures, in <base-dir>/<version>/")
    sm.add_argument("source", help="run directory (latest checkpoint) or checkpoint prefix")
    sm.add_argument("--base-dir", required=True, help="model base path as TF Serving watches it")
    sm.add_argument("--version", type=_positive_int, default=None, help="version number (default: next free)")
    sm.add_argument("--model-name", default="colourise", help="model name in models.config (default: colourise)")
    sm.add_argument(
        "--models-config-base-path",
        default=None,
        help="base_path written to models.config (default: /models/<model-name>, the Docker layout)",
    )
    sm.add_argument("--output-format", choices=savedmodel.OUTPUT_FORMATS, default="png")
    sm.add_argument("--jpeg-quality", type=_positive_int, default=95)
    sm.add_argument(
        "--png-compression",
        type=int,
        choices=range(10),
        default=savedmodel.DEFAULT_PNG_COMPRESSION,
        metavar="0-9",
        help=f"zlib level of PNG outputs (default {savedmodel.DEFAULT_PNG_COMPRESSION})",
    )
    sm.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=savedmodel.DEFAULT_MAX_PIXELS,
        help=f"largest accepted height*width per image (default {savedmodel.DEFAULT_MAX_PIXELS:,})",
    )

    tl = sub.add_parser("tflite", help="TFLite generator in float32 / float16 / dynamic_int8 / int8")
    tl.add_argument("source", help="run directory (latest checkpoint) or checkpoint prefix")
    tl.add_argument("--out-dir", required=True)
    tl.add_argument(
        "--variants",
        default=",".join(tflite.VARIANTS),
        help=f"comma-separated subset of {','.join(tflite.VARIANTS)} (default: all)",
    )
    tl.add_argument("--name", default=None, help="file stem (default: the experiment name)")
    tl.add_argument("--calibration-steps", type=_positive_int, default=tflite.DEFAULT_CALIBRATION_STEPS)
    tl.add_argument(
        "--calibration-data",
        default="samples",
        help="int8 calibration source: 'samples', a folder/glob, or a TFDS name (default: samples)",
    )
    tl.add_argument("--integer-io", action="store_true", help="int8 input/output tensors for the int8 variant")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's log messages")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``colourise-export``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")

    import tensorflow as tf

    from colourise_tf.fileio import basename, describe_os_error
    from colourise_tf.runs import RunDirectoryError

    try:
        if args.command == "savedmodel":
            from colourise_tf.serving.savedmodel import export_savedmodel, write_models_config

            path = export_savedmodel(
                args.source,
                args.base_dir,
                args.version,
                output_format=args.output_format,
                max_pixels=args.max_pixels,
                jpeg_quality=args.jpeg_quality,
                png_compression=args.png_compression,
            )
            config = write_models_config(args.base_dir, args.model_name, base_path=args.models_config_base_path)
            print(json.dumps({"savedmodel": str(path), "version": int(basename(path)), "models_config": str(config)}))
        else:
            from colourise_tf.serving.tflite import VARIANTS, export_tflite

            variants = [v.strip() for v in args.variants.split(",") if v.strip()]
            bad = [v for v in variants if v not in VARIANTS]
            if bad or not variants:
                parser.error(f"--variants: unknown {bad}; choose from {','.join(VARIANTS)}")
            paths = export_tflite(
                args.source,
                args.out_dir,
                variants,
                name=args.name,
                calibration_steps=args.calibration_steps,
                calibration_source=args.calibration_data,
                integer_io=args.integer_io,
            )
            print(json.dumps({v: str(p) for v, p in paths.items()}))
    except (RunDirectoryError, FileExistsError, ValueError) as e:
        print(f"colourise-export: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an output folder that cannot be created or written
        print(f"colourise-export: error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except tf.errors.OpError as e:  # the same on a URI (gs://...): tf.io.gfile's errors
        print(f"colourise-export: error: {e.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
