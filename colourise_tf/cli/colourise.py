"""The ``colourise`` command: colourise photos on a laptop CPU.

Usage::

    colourise INPUT... [-o OUTDIR] [--model PATH] [--format png|jpg]
              [--saturation G] [--compare] [--samples N]
              [--mask FILE [--hints FILE]] [--skip-existing] [--quiet]

* ``INPUT``: files, folders (searched recursively) and globs (quote them; ``**``
  recurses). A file named explicitly is always tried, whatever its extension;
  folders and globs contribute the extensions in
  :data:`colourise_tf.data.IMAGE_EXTENSIONS`, minus our own earlier outputs
  (``*_colourised*`` files inside OUTDIR), so ``colourise .`` or ``colourise pics
  -o pics`` run twice does not colourise its own results.
* ``--model``: a run directory, checkpoint prefix, SavedModel (or TF Serving base)
  directory, or ``.tflite`` file (see :func:`colourise_tf.predictors.load_predictor`).
  Default: ``$COLOURISE_MODEL`` if set, else ``runs/gorriz-ibn-sn-md`` (what
  ``make train`` leaves).
* Output: ``OUTDIR/<stem>_colourised.<ext>`` (default OUTDIR ``colourised/``), at the
  input's full resolution, in display orientation (EXIF applied), with the input's
  exact lightness. ``<ext>`` is ``jpg`` for JPEG inputs and ``png`` otherwise, or
  ``--format``; inputs with an alpha channel always give PNG with the input's alpha
  re-attached unchanged. 16-bit inputs are read at 8 bits and written as 8-bit PNG.
  ``--compare`` also writes ``<stem>_colourised_compare.<ext>``: grey | colourised
  side by side. ``--samples N`` writes ``<stem>_colourised_s1 .. _sN`` when the model is
  stochastic (noise channel or dropout), else one output and a note.
* Safety: an input is never overwritten (an output path that is an input is
  refused with a message); two inputs with the same stem get ``<stem>_2_colourised``
  etc.; every file is written to a temporary file in OUTDIR and renamed into place,
  so an interrupted run leaves no half-written image. An existing output that is
  not an input is taken to be a previous result and replaced, unless
  ``--skip-existing`` is given (then that input is skipped, e.g. to resume).
* A file that cannot be read or written gets one ``path: reason`` line on stderr
  and the rest still run. Exit code 0 = all done, 1 = some file failed, 2 = usage
  error (no inputs, bad model, mask with a model that takes none...).

The work is in library functions (:func:`expand_inputs`, :func:`read_image`,
:func:`plan_outputs`, :func:`colourise_files`); :func:`main` only parses arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys

# TensorFlow's C++ start-up chatter is noise for command-line users (set it to 0 to see it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from colourise_tf.fileio import atomic_writer

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_OUTDIR",
    "SUFFIX",
    "UsageError",
    "LoadedImage",
    "Result",
    "expand_inputs",
    "is_output_name",
    "read_image",
    "read_mask",
    "plan_outputs",
    "output_ext",
    "atomic_save",
    "colourise_files",
    "build_parser",
    "main",
]

#: What ``make train`` leaves; the model used when ``--model`` is not given.
DEFAULT_MODEL = os.path.join("runs", "gorriz-ibn-sn-md")
#: Output folder when ``-o`` is not given (relative to the current directory).
DEFAULT_OUTDIR = "colourised"
#: Added to the input's stem to name the output.
SUFFIX = "_colourised"
#: Show a progress bar above this many files.
PROGRESS_MIN_FILES = 3
_JPEG_QUALITY = 95
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class UsageError(ValueError):
    """The command line cannot be carried out at all (exit code 2)."""


@dataclasses.dataclass
class LoadedImage:
    """An input image, decoded for colourisation.

    Attributes:
        rgb: uint8 ``[H, W, 3]`` in display orientation. For images with alpha,
            the stored (un-composited) colour under the alpha.
        alpha: uint8 ``[H, W]`` alpha channel, or None.
        format: Pillow's format name (``"JPEG"``, ``"PNG"``...), or None.
        mode: Pillow's mode of the file (``"RGB"``, ``"I;16"``, ``"P"``...).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    format: str | None
    mode: str


@dataclasses.dataclass
class Result:
    """What happened to one input.

    Attributes:
        input: the input path.
        outputs: the files written.
        error: ``None`` on success, else the reason (no path).
        skipped: True when ``skip_existing`` left an existing output alone.
    """

    input: str
    outputs: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    skipped: bool = False

    @property
    def ok(self) -> bool:
        """No error."""
        return self.error is None


# ----------------------------------------------------------------------- inputs


_OUTPUT_STEM = re.compile(re.escape(SUFFIX) + r"(_s\d+)?(_compare)?$")


def _inside(path: str, directory: str | None) -> bool:
    if directory is None:
        return False
    real_dir = os.path.realpath(directory)
    try:
        return os.path.commonpath([os.path.realpath(path), real_dir]) == real_dir
    except ValueError:  # different drives
        return False


def is_output_name(path: str | os.PathLike) -> bool:
    """The file name has the shape of one of our outputs (``<stem>_colourised``,
    ``..._s2``, ``..._compare``)."""
    return bool(_OUTPUT_STEM.search(Path(path).stem))


def expand_inputs(
    patterns: Sequence[str], *, exclude_dir: str | os.PathLike | None = None
) -> tuple[list[str], list[str]]:
    """Resolves files, folders and globs to image files.

    Args:
        patterns: command-line inputs.
        exclude_dir: the output folder: files found by folder/glob expansion inside
            it whose names look like our outputs (:func:`is_output_name`) are left
            out, so running ``colourise .`` twice does not colourise its own
            results. Files named explicitly are always kept.

    Returns:
        ``(files, unmatched)``: the files in command-line order (sorted within a
        folder or glob, duplicates removed), and the patterns that matched nothing.
    """
    from colourise_tf.data import list_image_files

    exclude = os.fspath(exclude_dir) if exclude_dir is not None else None
    files: list[str] = []
    seen: set[str] = set()
    unmatched: list[str] = []
    for pattern in patterns:
        expanded = os.path.expanduser(os.fspath(pattern))
        if os.path.isfile(expanded):
            found = [expanded]
        else:
            try:
                found = [f for f in list_image_files(expanded) if not (is_output_name(f) and _inside(f, exclude))]
            except FileNotFoundError:
                found = []
        if not found:
            unmatched.append(os.fspath(pattern))
        for f in found:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files, unmatched


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Decodes an image for colourisation (any mode, EXIF orientation applied).

    Decoding is :func:`colourise_tf.data.decode_image_file` (palette, 16-bit, CMYK,
    grey, first animation frame...). Images with an alpha channel are read again
    to keep their alpha and the un-composited colour under it (the data pipeline
    composites over white, which would whiten semi-transparent edges twice once
    the alpha is re-attached).

    Raises:
        colourise_tf.data.ImageDecodeError: the file cannot be decoded.
    """
    from PIL import Image, ImageOps

    from colourise_tf.data import ImageDecodeError, decode_image_file

    path = os.fspath(path)
    rgb = decode_image_file(path)
    alpha = None
    try:
        with Image.open(path) as img:
            fmt, mode = img.format, img.mode
            if _has_alpha(img):
                img.load()
                if img.getexif().get(0x0112, 1) != 1:
                    img = ImageOps.exif_transpose(img)
                rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8)
                rgb, alpha = np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    except Exception as err:  # decoded once already, so this is unexpected
        raise ImageDecodeError(path, f"cannot read alpha channel ({type(err).__name__}: {err})") from err
    return LoadedImage(rgb=rgb, alpha=alpha, format=fmt, mode=mode)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Reads a black/white mask image: float32 ``[H, W, 1]``, 1 where the pixel is
    light (>= 128 after averaging the channels; white = hint region)."""
    from colourise_tf.data import decode_image_file

    rgb = decode_image_file(path).astype(np.float32)
    return (rgb.mean(axis=-1, keepdims=True) >= 127.5).astype(np.float32)


# ---------------------------------------------------------------------- outputs


def plan_outputs(files: Sequence[str], ext_of: Sequence[str]) -> list[str]:
    """Unique output stems (``<stem>_colourised``, ``<stem>_2_colourised``...).

    Two inputs whose output names would coincide (same stem from different
    folders, or same stem with different extensions written in one format) get
    ``_2``, ``_3``... in command-line order. Comparison is case-insensitive, for
    case-insensitive file systems.

    Args:
        files: input paths.
        ext_of: the output extension of each input.

    Returns:
        The output base name (no extension, no sample/compare suffix) per input.
    """
    used: set[str] = set()
    names = []
    for path, ext in zip(files, ext_of):
        stem = Path(path).stem
        n = 1
        while True:
            base = (stem if n == 1 else f"{stem}_{n}") + SUFFIX
            key = f"{base}.{ext}".casefold()
            if key not in used:
                break
            n += 1
        used.add(key)
        names.append(base)
    return names


def atomic_save(image: np.ndarray, path: str | os.PathLike, *, fmt: str) -> None:
    """Writes an image through a temporary file in the destination folder and
    ``os.replace`` (:func:`colourise_tf.fileio.atomic_writer`), so the destination is
    either the old file or the complete new one.

    Args:
        image: uint8 ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA).
        path: destination.
        fmt: ``"png"`` or ``"jpg"``.
    """
    from PIL import Image

    mode = "RGBA" if image.shape[-1] == 4 else "RGB"
    pil = Image.fromarray(np.ascontiguousarray(image), mode)
    with atomic_writer(path, "wb") as f:
        if fmt == "jpg":
            pil.save(f, format="JPEG", quality=_JPEG_QUALITY, subsampling=0)
        else:
            pil.save(f, format="PNG", compress_level=6)


def _grey_preview(rgb: np.ndarray, colour_space: str) -> np.ndarray:
    """The input's lightness alone, as uint8 RGB (what the model sees)."""
    import tensorflow as tf

    from colourise_tf import colour, inference

    grey = inference.grey_of(rgb, colour_space)
    zeros = tf.zeros(tf.concat([tf.shape(grey)[:-1], [2]], 0))
    return inference.to_uint8(colour.model_to_rgb(grey, zeros, colour_space)).numpy()


def _colours_inside_mask_only(predictor) -> bool:
    """The predictor's own answer (TFLite: from its sidecar), else from its config."""
    answer = getattr(predictor, "colours_inside_mask_only", None)
    if answer is not None:
        return bool(answer)
    from colourise_tf.inference import colours_inside_mask_only

    return colours_inside_mask_only(predictor.spec, getattr(predictor, "cfg", None))


def colourise_files(
    paths: Sequence[str],
    predictor,
    outdir: str | os.PathLike,
    *,
    fmt: str | None = None,
    saturation: float = 1.0,
    compare: bool = False,
    samples: int = 1,
    mask: np.ndarray | None = None,
    hints: np.ndarray | None = None,
    skip_existing: bool = False,
    progress: bool = False,
    report: Callable[[str], None] | None = None,
) -> list[Result]:
    """Colourises image files into ``outdir`` (see the module docstring for naming).

    Args:
        paths: input image files.
        predictor: a :class:`colourise_tf.predictors.Predictor`.
        outdir: output folder (created if missing).
        fmt: ``"png"``, ``"jpg"`` or None (by input: jpg for JPEG, else png).
            Images with alpha are always written as PNG.
        saturation: chroma gain (1 = as predicted, 0 = grey, 2 = twice as vivid).
        compare: write grey | colourised side by side.
        samples: number of different colourisations per input (stochastic models
            only; a deterministic model gives one).
        mask: mask models: float ``[H, W, 1]`` 0/1 (white = hint region), resized
            to each input.
        hints: mask models: uint8 RGB image whose chroma inside the mask is the
            hint colour, resized to each input.
        skip_existing: leave inputs whose outputs all exist alone.
        progress: show a tqdm progress bar.
        report: called with each ``path: reason`` error line (default: stderr).

    Returns:
        One :class:`Result` per input, in order.

    Raises:
        ValueError: ``fmt``/``samples`` invalid, or a mask/hints for a model
            without a mask channel.
    """
    if fmt not in (None, "png", "jpg"):
        raise ValueError(f"fmt must be 'png', 'jpg' or None, got {fmt!r}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if (mask is not None or hints is not None) and not predictor.spec.mask_channel:
        raise ValueError(
            f"{predictor.source}: this model has no mask channel, so --mask/--hints do not apply "
            "(use a partial-mask model)"
        )
    if hints is not None and mask is None:
        raise ValueError("hints need a mask (--hints applies inside --mask only)")
    if hints is not None and _colours_inside_mask_only(predictor):
        raise ValueError(
            f"{predictor.source}: trained with loss.mask_target=partial, it colours inside the mask "
            "from the mask alone: use --mask without --hints"
        )
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    sample_ids: list[int | None] = [None]
    if samples > 1 and predictor.stochastic:
        sample_ids = list(range(samples))
    input_keys = {os.path.realpath(p) for p in paths}
    input_inodes = set()
    for p in paths:
        try:
            st = os.stat(p)
            input_inodes.add((st.st_dev, st.st_ino))
        except OSError:
            pass

    def is_input(candidate: Path) -> bool:
        if os.path.realpath(candidate) in input_keys:
            return True
        try:  # hard links, case-insensitive file systems
            st = os.stat(candidate)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in input_inodes

    # Names are planned from the extension each input will get; reading the header
    # twice is cheap next to colourising, and it keeps the naming independent of
    # which files later fail.
    exts = [output_ext(p, fmt) for p in paths]
    bases = plan_outputs(paths, exts)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="img", file=sys.stderr, dynamic_ncols=True)

    def tell(line: str) -> None:
        if report is not None:
            report(line)
        elif bar is not None:
            bar.write(line, file=sys.stderr)  # keeps the bar intact
        else:
            print(line, file=sys.stderr)

    results = []
    try:
        for path, base, ext in zip(paths, bases, exts):
            result = Result(input=os.fspath(path))
            results.append(result)
            try:
                _colourise_one(
                    path,
                    base,
                    ext,
                    predictor,
                    outdir,
                    result,
                    is_input,
                    saturation=saturation,
                    compare=compare,
                    sample_ids=sample_ids,
                    mask=mask,
                    hints=hints,
                    skip_existing=skip_existing,
                )
            except Exception as err:  # one bad file never stops the batch
                result.error = _reason(err, path)
                tell(f"{path}: {result.error}")
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results


def _has_alpha(img) -> bool:
    """A Pillow image carries alpha (an alpha band or a transparency key)."""
    return img.mode in _ALPHA_MODES or (img.mode not in _SIXTEEN_BIT_MODES and "transparency" in img.info)


def output_ext(path: str, fmt: str | None = None) -> str:
    """The output extension for an input: ``png`` when it has alpha, else ``fmt``,
    else ``jpg`` for JPEG and ``png`` for the rest (also when the header is unreadable:
    the decode error is reported later)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if _has_alpha(img):
                return "png"
            return fmt or ("jpg" if img.format in ("JPEG", "MPO") else "png")
    except Exception:
        return fmt or "png"


def _reason(err: BaseException, path) -> str:
    from colourise_tf.data import ImageDecodeError

    if isinstance(err, ImageDecodeError):
        return err.reason
    if isinstance(err, OSError) and err.strerror:
        where = f" ({err.filename})" if err.filename and os.fspath(err.filename) != os.fspath(path) else ""
        return f"{err.strerror}{where}"
    return str(err) or type(err).__name__


def _colourise_one(
    path: str,
    base: str,
    ext: str,
    predictor,
    outdir: Path,
    result: Result,
    is_input: Callable[[Path], bool],
    *,
    saturation: float,
    compare: bool,
    sample_ids: list[int | None],
    mask: np.ndarray | None,
    hints: np.ndarray | None,
    skip_existing: bool,
) -> None:
    image = read_image(path)
    if image.alpha is not None:
        ext = "png"
    # One output per sample; with --compare also grey | colourised beside it.
    plans = []
    for k in sample_ids:
        name = base + ("" if k is None else f"_s{k + 1}")
        plans.append((k, outdir / f"{name}.{ext}", outdir / f"{name}_compare.{ext}" if compare else None))
    names = [p for _, out, cmp_out in plans for p in (out, cmp_out) if p is not None]
    for out in names:
        if is_input(out):
            raise ValueError(f"refusing to write {out}: that file is one of the inputs")
    if skip_existing and all(out.exists() for out in names):
        result.skipped = True
        return
    grey = _grey_preview(image.rgb, predictor.spec.colour_space) if compare else None
    for k, out, cmp_out in plans:
        rgb = predictor.colourise(image.rgb, saturation=saturation, mask=mask, hints=hints, sample=k)
        writes = [(out, rgb, 1)]
        if cmp_out is not None:
            writes.append((cmp_out, np.concatenate([grey, rgb], axis=1), 2))
        for path_out, pixels, copies in writes:
            if image.alpha is not None:
                alpha = np.concatenate([image.alpha] * copies, axis=1)
                pixels = np.concatenate([pixels, alpha[..., None]], axis=-1)
            atomic_save(pixels, path_out, fmt=ext)
            result.outputs.append(os.fspath(path_out))


# -------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The ``colourise`` argument parser."""
    p = argparse.ArgumentParser(
        prog="colourise",
        description=(
            "Colourise photos at their full resolution with a trained colourise_tf model "
            "(run directory, SavedModel or .tflite)."
        ),
        epilog=(
            "Outputs are OUTDIR/<stem>_colourised.<ext>; inputs are never overwritten. "
            "Exit status: 0 all done, 1 some files failed, 2 usage error."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or globs")
    p.add_argument("-o", "--outdir", default=DEFAULT_OUTDIR, help=f"output folder (default: ./{DEFAULT_OUTDIR})")
    p.add_argument(
        "-m",
        "--model",
        default=None,
        help=(
            "run directory, checkpoint prefix, SavedModel / TF Serving directory or .tflite file "
            f"(default: $COLOURISE_MODEL, else {DEFAULT_MODEL})"
        ),
    )
    p.add_argument(
        "-f",
        "--format",
        choices=("png", "jpg"),
        default=None,
        help="output format (default: jpg for JPEG inputs, png otherwise; alpha images are always png)",
    )
    p.add_argument(
        "-s",
        "--saturation",
        type=float,
        default=1.0,
        help="chroma gain: 1 = as predicted, 0 = grey, 2 = twice as vivid (default 1)",
    )
    p.add_argument(
        "--compare", action="store_true", help="also write grey | colourised side by side (<stem>_colourised_compare)"
    )
    p.add_argument(
        "--samples",
        type=int,
        default=1,
        metavar="N",
        help="N different colourisations per input (models with noise or dropout; default 1)",
    )
    p.add_argument(
        "--mask",
        metavar="FILE",
        help="partial-mask models: black/white mask, white = hint region (models trained with "
        "loss.mask_target=partial colour only there, and everywhere without --mask)",
    )
    p.add_argument(
        "--hints",
        metavar="FILE",
        help="partial-mask models: RGB image whose colours inside the mask are the hints "
        "(default: none; pass the input itself to keep its own colours there)",
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip inputs whose outputs exist already (default: replace earlier outputs)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes (errors are still printed)")
    return p


def _load_model(arg: str | None):
    from colourise_tf.predictors import load_predictor

    path = arg or os.environ.get("COLOURISE_MODEL") or DEFAULT_MODEL
    if arg is None and not os.path.exists(path):
        raise UsageError(
            f"no model given and the default {path!r} does not exist: train one with `make train` "
            "or pass --model PATH (a run directory, SavedModel directory or .tflite file)"
        )
    try:
        return load_predictor(path)
    except (ValueError, OSError, ImportError) as err:
        raise UsageError(f"cannot load model: {err}") from err


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``colourise`` console script.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        0 if every input was colourised, 1 if some failed, 2 on a usage error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)

    def fail(message: str) -> int:
        print(f"colourise: error: {message}", file=sys.stderr)
        return 2

    if args.samples < 1:
        return fail("--samples must be >= 1")
    if not (math.isfinite(args.saturation) and args.saturation >= 0):
        return fail("--saturation must be a finite number >= 0")
    if args.hints and not args.mask:
        return fail("--hints needs --mask (hints apply inside the mask)")
    outdir = os.path.expanduser(args.outdir)
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        return fail(f"output folder {outdir!r} exists and is not a folder")
    files, unmatched = expand_inputs(args.inputs, exclude_dir=outdir)
    if not files:
        return fail("no image files matched " + ", ".join(repr(u) for u in unmatched))
    try:
        predictor = _load_model(args.model)
    except UsageError as err:
        return fail(str(err))
    mask = hints = None
    if args.mask:
        if not predictor.spec.mask_channel:
            return fail(
                f"--mask needs a model with a mask channel (the partial-mask preset); {predictor.source} has none"
            )
        from colourise_tf.data import ImageDecodeError, decode_image_file

        try:
            mask = read_mask(args.mask)
            hints = decode_image_file(args.hints) if args.hints else None
        except ImageDecodeError as err:
            return fail(str(err))
    if args.samples > 1 and not predictor.stochastic and not args.quiet:
        why = "no noise channel or dropout"
        if predictor.cfg is not None and predictor.cfg.model.generator.dropout > 0:
            why = "exports run without dropout; sampling dropout needs the run directory"
        print(
            f"colourise: note: {predictor.source} is deterministic ({why}): writing one colourisation per input",
            file=sys.stderr,
        )
    for pattern in unmatched:
        print(f"{pattern}: no image files found", file=sys.stderr)
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as err:
        return fail(f"cannot create output folder {outdir!r}: {err.strerror or err}")
    progress = not args.quiet and len(files) > PROGRESS_MIN_FILES and sys.stderr.isatty()
    results = colourise_files(
        files,
        predictor,
        outdir,
        fmt=args.format,
        saturation=args.saturation,
        compare=args.compare,
        samples=args.samples,
        mask=mask,
        hints=hints,
        skip_existing=args.skip_existing,
        progress=progress,
    )
    return 0 if all(r.ok for r in results) and not unmatched else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
