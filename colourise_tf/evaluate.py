"""Evaluation harness: compare colourisation models the way the papers do.

Runs one or more models -- training run directories, checkpoint prefixes, SavedModel
directories or ``.tflite`` files, all loaded through
:func:`colourise_tf.predictors.load_predictor` -- over one test split and writes to an
output directory:

* ``evaluation.json``: every metric of every model, the settings, the dataset and
  the number of images, plus the a/b histogram counts (enough to re-plot);
* ``evaluation.md``: Górriz et al. 2019 Table I (``Method | L1 | PSNR [dB] | Lperc``), Tarrés 2021
  Table 2 (``Models | JS a | JS b | KL a | KL b | PSNR | SSIM``) and a table of
  colourfulness (generated vs real), the chroma ΔE and the discriminator accuracy on
  real / generated pairs (run directories only: exports carry no discriminator);
* ``ab_histograms.png`` (1200 x 500 px): the a and b histograms of every model beside
  the ground truth, log-scale y (Górriz et al. 2019 Fig. 4, Tarrés 2021 Fig. 8).

Command line (``colourise-eval``, ``make eval``; :mod:`colourise_tf.cli.eval`)::

    colourise-eval --model runs/pix2pix --model runs/gorriz-ibn-sn-md --name "IBN + SN + MD" \\
        --dataset imagenet2012 --split gorriz-test --manual-dir /data/manual --out eval/

Library::

    result = evaluate_models(["runs/a", "runs/b"], dataset="samples", limit=8)
    paths = result.save("eval/")          # {"json": ..., "markdown": ..., "histograms": ...}

Models and the output directory may be URIs of any file system TensorFlow knows
(``--model gs://bucket/runs/a --out gs://bucket/eval``, ``ram://``; ``file:///x`` is the
local ``/x``): they are read and written through ``tf.io.gfile``
(:mod:`colourise_tf.fileio`).

Evaluation protocol
-------------------
* **Images.** The test split goes through the input pipeline with ``training=False``
  (:func:`colourise_tf.data.build_dataset`): the shorter side is resized to the
  evaluation size ``S`` and the image is centre-cropped to ``S x S``, in dataset order
  (no shuffling, no flip); images that are already grey are left out (see
  :mod:`colourise_tf.data`). ``S`` defaults to each model's own size, so every model is
  evaluated at the resolution it was trained at (256 x 256 for the paper presets, as in
  the papers); ``image_size`` forces one size for all models, each model then sees its
  input resized to its own size and its chroma resized back (as
  :func:`colourise_tf.inference.colourise_grey` does). ``limit`` keeps the first N
  images.
* **Generated image.** The model's grey input is the real image's L (Lab models) or Y
  (YUV models) at model size. Inference is deterministic (``sample=None``: dropout
  off, batch-norm moving statistics -- the numbers the exports give); noise channels
  (the DCGAN report) are drawn from the stateless seed ``(seed, batch index)``, so runs are
  reproducible; mask models (the IMPA project) get an empty mask and no hints (automatic
  colourisation), except those trained with ``loss.mask_target=partial``, which
  colour inside their mask only and get a full mask. The predicted chroma is
  recombined with the **real** lightness: Lab models give ``Lab = (L_real, 110 ·
  chroma)`` (the model's own ab, before gamut clipping) and RGB = ``lab_to_rgb`` of it
  (out-of-gamut colours clipped); YUV models give RGB from ``(Y_real, UV)`` and their ab
  is that RGB's.
* **Metrics**, per image then averaged over the test set:

  - PSNR (dB) and SSIM on sRGB in ``[0, 1]`` (:func:`colourise_tf.metrics.psnr`,
    :func:`~colourise_tf.metrics.ssim`; an identical image has infinite PSNR, written
    as ``null`` in the JSON and ``∞`` in the tables);
  - L1 = mean ``|Δa|, |Δb|`` and L2 = mean per-pixel ``sqrt(Δa² + Δb²)``, in Lab units
    (:func:`~colourise_tf.metrics.ab_l1`, :func:`~colourise_tf.metrics.ab_l2`);
  - Lperc: Górriz et al. 2019 eq. 7 on VGG19 ``relu{1..5}_1``
    (:class:`~colourise_tf.metrics.PerceptualDistance`), ImageNet weights by default;
    ``perceptual_weights=None`` (CLI ``--perceptual-weights none``) skips it, a path
    loads a local ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``;
  - colourfulness (Hasler & Süsstrunk) of the generated and of the real images;
  - discriminator accuracy on (real L, real chroma) and (real L, generated chroma) at
    model size, every patch of every scale counted
    (:func:`~colourise_tf.metrics.discriminator_accuracy`, threshold 0.5 on the raw
    output for least-squares presets, 0 otherwise);

  and over the whole test set: the a and b histograms (220 bins of width 1 on
  ``[-110, 110]``, :class:`~colourise_tf.metrics.AbHistogram`), compared per channel
  by ``JS(real, generated)`` and ``KL(real || generated)`` in nats on the normalised
  histograms (:func:`~colourise_tf.metrics.histogram_divergences`); the PNG plots
  them on a log y-axis.
* **Reference rows.** ``L only (grey)`` (chroma = 0, i.e. the input itself; on by
  default) shows what a model that adds no colour scores: its PSNR is high, its
  colourfulness 0 and its divergences large. The real images' colourfulness and
  histograms are the ``Ground truth`` reference.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# TensorFlow's C++ start-up chatter is noise for command-line users (set it to 0 to see it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from colourise_tf import colour, fileio, inference, metrics
from colourise_tf.data import PipelineReport, build_dataset
from colourise_tf.fileio import atomic_write_text, atomic_writer

__all__ = [
    "EvaluationError",
    "ChromaPredictor",
    "EvalModel",
    "ModelResult",
    "EvaluationResult",
    "GREY_BASELINE_NAME",
    "GROUND_TRUTH_NAME",
    "TABLE_I_HEADER",
    "TABLE_2_HEADER",
    "TABLE_COLOUR_HEADER",
    "load_eval_model",
    "load_perceptual",
    "evaluate_models",
]

logger = logging.getLogger("colourise_tf.evaluate")

GREY_BASELINE_NAME = "L only (grey)"
GROUND_TRUTH_NAME = "Ground truth"
#: Column headers of the Markdown tables (Górriz et al. 2019 Table I, Tarrés 2021 Table 2).
TABLE_I_HEADER = ("Method", "L1", "PSNR [dB]", "Lperc")
TABLE_2_HEADER = ("Models", "JS a", "JS b", "KL a", "KL b", "PSNR", "SSIM")
TABLE_COLOUR_HEADER = (
    "Model",
    "Colourfulness (generated)",
    "Colourfulness (real)",
    "L2 (ΔE ab)",
    "D acc. real",
    "D acc. fake",
)
#: Size of the histogram figure: 12 x 5 in at 100 dpi = 1200 x 500 px.
FIGURE_SIZE_IN = (12.0, 5.0)
FIGURE_DPI = 100
JSON_NAME = "evaluation.json"
MARKDOWN_NAME = "evaluation.md"
HISTOGRAM_NAME = "ab_histograms.png"


class EvaluationError(Exception):
    """A user-facing problem (bad model path, missing weights, empty test set)."""


@runtime_checkable
class ChromaPredictor(Protocol):
    """What evaluation needs from a model: :class:`colourise_tf.predictors.Predictor`
    satisfies it, and so can any test double."""

    spec: inference.ModelSpec
    source: str
    stochastic: bool

    def chroma(self, g_in: tf.Tensor, *, sample: Any = None) -> tf.Tensor:
        """G input ``[B, S, S, C_in]`` (network range) -> chroma ``[B, S, S, 2]``."""
        ...


@dataclasses.dataclass
class EvalModel:
    """One model to evaluate.

    Attributes:
        name: row label in the tables.
        predictor: the model (see :class:`ChromaPredictor`).
        discriminator: the run's discriminator, or ``None`` (exports, D-less presets).
        d_threshold: decision threshold on the raw discriminator output.
        info: provenance written to the JSON (path, kind, preset, step...).
    """

    name: str
    predictor: ChromaPredictor
    discriminator: Any = None
    d_threshold: float = 0.0
    info: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ModelResult:
    """Metrics of one model (or reference row) over the test set.

    ``metrics`` keys: ``l1``, ``l2``, ``psnr``, ``ssim``, ``lperc`` (``None`` when
    skipped), ``js_a``, ``js_b``, ``kl_a``, ``kl_b``, ``colourfulness``,
    ``colourfulness_real``, ``d_accuracy_real``, ``d_accuracy_fake`` (``None``
    without a discriminator). ``histogram`` is the int64 ``[2, bins]`` a/b counts.
    """

    name: str
    image_size: int
    metrics: dict[str, float | None]
    histogram: np.ndarray
    info: dict = dataclasses.field(default_factory=dict)
    baseline: bool = False

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "image_size": self.image_size,
            **self.info,
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "histogram": {"a": self.histogram[0].tolist(), "b": self.histogram[1].tolist()},
        }


@dataclasses.dataclass
class EvaluationResult:
    """Everything one evaluation produced; :meth:`save` writes the three files."""

    settings: dict
    dataset: dict
    models: list[ModelResult]
    baselines: list[ModelResult]
    ground_truth: dict[int, dict]  # image size -> {"colourfulness", "histogram", "n_images"}
    bin_edges: np.ndarray

    # ----------------------------------------------------------------- serialise

    def to_json(self) -> dict:
        """A JSON-serialisable dict (non-finite numbers become ``null``)."""
        return {
            "format": "colourise_tf.evaluation/1",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "settings": self.settings,
            "dataset": self.dataset,
            "models": [m.to_json() for m in self.models],
            "baselines": [m.to_json() for m in self.baselines],
            "ground_truth": [
                {
                    "image_size": size,
                    "n_images": gt["n_images"],
                    "colourfulness": _json_float(gt["colourfulness"]),
                    "histogram": {"a": gt["histogram"][0].tolist(), "b": gt["histogram"][1].tolist()},
                }
                for size, gt in sorted(self.ground_truth.items())
            ],
            "histogram_bin_edges": [float(x) for x in self.bin_edges],
        }

    def markdown(self) -> str:
        """The report: Górriz et al. 2019 Table I, Tarrés 2021 Table 2 and a colour / D table."""
        rows = self.models + self.baselines
        ds = self.dataset
        split = f", split `{ds['split']}`" if ds.get("split") else ""
        sizes = sorted({r.image_size for r in rows})
        perc = self.settings.get("perceptual_weights")
        lines = [
            "# Colourisation evaluation",
            "",
            f"Dataset `{ds['source']}`{split}: {ds['n_images']} images at "
            f"{', '.join(f'{s}×{s}' for s in sizes)}"
            + (f" (first {self.settings['limit']})" if self.settings.get("limit") else "")
            + ". Generated = predicted chroma + real L; PSNR/SSIM on sRGB [0, 1]; "
            "L1/L2 on ab (Lab units); JS/KL (nats) between the real and generated a/b "
            "histograms over the whole set"
            + ("; Lperc skipped (no VGG19 weights)." if perc is None else f"; Lperc on VGG19 ({perc})."),
            "",
            "## Table I (Górriz et al. 2019)",
            "",
            _md_row(TABLE_I_HEADER),
            _md_rule(TABLE_I_HEADER),
        ]
        for r in rows:
            m = r.metrics
            lines.append(_md_row((r.name, _fmt(m["l1"], 2), _fmt_psnr(m["psnr"]), _fmt(m["lperc"], 2))))
        lines += ["", "## Table 2 (Tarrés 2021)", "", _md_row(TABLE_2_HEADER), _md_rule(TABLE_2_HEADER)]
        for r in rows:
            m = r.metrics
            lines.append(
                _md_row(
                    (
                        r.name,
                        _fmt(m["js_a"], 4),
                        _fmt(m["js_b"], 4),
                        _fmt(m["kl_a"], 4),
                        _fmt(m["kl_b"], 4),
                        _fmt_psnr(m["psnr"]),
                        _fmt(m["ssim"], 4),
                    )
                )
            )
        lines += [
            "",
            "## Colourfulness and discriminator",
            "",
            _md_row(TABLE_COLOUR_HEADER),
            _md_rule(TABLE_COLOUR_HEADER),
        ]
        for r in rows:
            m = r.metrics
            lines.append(
                _md_row(
                    (
                        r.name,
                        _fmt(m["colourfulness"], 2),
                        _fmt(m["colourfulness_real"], 2),
                        _fmt(m["l2"], 2),
                        _fmt(m["d_accuracy_real"], 3),
                        _fmt(m["d_accuracy_fake"], 3),
                    )
                )
            )
        for size, gt in sorted(self.ground_truth.items()):
            label = GROUND_TRUTH_NAME if len(self.ground_truth) == 1 else f"{GROUND_TRUTH_NAME} @{size}"
            c = _fmt(gt["colourfulness"], 2)
            lines.append(_md_row((label, c, c, _fmt(0.0, 2), "–", "–")))
        lines += [
            "",
            "Colourfulness: Hasler & Süsstrunk M (0-255 scale), mean over images. "
            "D acc.: fraction of discriminator patches classified correctly on real / "
            "generated pairs (run directories only).",
            "",
        ]
        return "\n".join(lines)

    def plot_histograms(self, path: str | os.PathLike) -> Path | str:
        """Writes the log-scale a/b histogram figure (1200 x 500 px PNG) to ``path``
        (local, or a URI: then the URI string is returned)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=FIGURE_SIZE_IN, dpi=FIGURE_DPI, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2)
        centres = 0.5 * (self.bin_edges[:-1] + self.bin_edges[1:])

        def prob(counts: np.ndarray) -> np.ndarray:
            total = counts.sum()
            p = counts / total if total else counts.astype(np.float64)
            return np.where(p > 0, p, np.nan)  # log axis: leave empty bins out

        for c, (ax, channel) in enumerate(zip(axes, ("a", "b"))):
            for size, gt in sorted(self.ground_truth.items()):
                label = GROUND_TRUTH_NAME if len(self.ground_truth) == 1 else f"{GROUND_TRUTH_NAME} @{size}"
                ax.plot(centres, prob(gt["histogram"][c]), color="black", linewidth=2.2, label=label)
            for r in self.models:
                ax.plot(centres, prob(r.histogram[c]), linewidth=1.3, label=r.name)
            for r in self.baselines:
                ax.plot(centres, prob(r.histogram[c]), color="grey", linestyle=":", marker=".", label=r.name)
            ax.set_yscale("log")
            ax.set_xlim(self.bin_edges[0], self.bin_edges[-1])
            ax.set_xlabel(f"{channel} (CIE Lab)")
            ax.set_ylabel("fraction of pixels (log)")
            ax.set_title(f"Channel {channel}")
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize="small")
        path = fileio.local_path_or_uri(path)
        with atomic_writer(path, "wb") as f:
            fig.savefig(f, dpi=FIGURE_DPI, format="png")
        return path

    def save(self, out_dir: str | os.PathLike) -> dict[str, Path | str]:
        """Writes ``evaluation.json``, ``evaluation.md`` and ``ab_histograms.png``
        (each atomically: :func:`colourise_tf.fileio.atomic_writer`) to ``out_dir``
        (created), a local folder or a URI (``gs://bucket/eval``, ``ram://``...).

        Returns:
            ``{"json": path, "markdown": path, "histograms": path}``: :class:`pathlib.Path`
            for a local ``out_dir``, URI strings otherwise.
        """
        out = fileio.normalize(out_dir)
        fileio.makedirs(out)
        paths = {
            key: fileio.local_path_or_uri(fileio.join(out, name))
            for key, name in (("json", JSON_NAME), ("markdown", MARKDOWN_NAME), ("histograms", HISTOGRAM_NAME))
        }
        atomic_write_text(paths["json"], json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n")
        atomic_write_text(paths["markdown"], self.markdown())
        self.plot_histograms(paths["histograms"])
        return paths


# ------------------------------------------------------------------------ helpers


def _json_float(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return [_json_float(x) for x in v]
    v = float(v)
    return v if math.isfinite(v) else None


def _fmt(v: float | None, digits: int) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _fmt_psnr(v: float | None) -> str:
    if v is not None and math.isinf(v) and v > 0:
        return "∞"
    return _fmt(v, 2)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _md_rule(cells: Sequence[str]) -> str:
    return "|" + "|".join(["---"] + ["---:"] * (len(cells) - 1)) + "|"


# ---------------------------------------------------------------------- loading


def _is_remote_checkpoint_prefix(path: Any) -> bool:
    """A URI checkpoint prefix. (Checked before directories: ``ram://`` reports any
    prefix of a file name, such as ``ckpt-N`` beside ``ckpt-N.index``, as a directory.)"""
    return fileio.is_remote(path) and tf.io.gfile.exists(os.fspath(path) + ".index")


def _default_name(path: Any) -> str:
    if path.suffix == ".tflite":
        return path.stem
    prefix = not path.exists() or _is_remote_checkpoint_prefix(path)
    if prefix and path.parent.name == "checkpoints":  # <run>/checkpoints/ckpt-N
        return f"{path.parent.parent.name}@{path.name}"
    resolved = path.resolve()
    if resolved.name.isdigit():  # a numbered TF Serving version directory
        return f"{resolved.parent.name}/{resolved.name}"
    return resolved.name or str(path)


def _threshold_for(adversarial: str) -> float:
    # LSGAN targets are 0 (fake) / 1 (real): its decision boundary is 0.5, not 0.
    return 0.5 if adversarial == "least_squares" else 0.0


def _run_dir_and_checkpoint(path: Any) -> tuple[Any, str | None] | None:
    """``(run_dir, checkpoint prefix)`` for a run directory / checkpoint prefix, else None."""
    from colourise_tf import runs

    if path.is_dir() and not _is_remote_checkpoint_prefix(path):
        if runs.is_run_directory(path):
            return path, runs.latest_checkpoint(path)
        return None
    if tf.io.gfile.exists(os.fspath(path) + ".index") and runs.is_run_directory(path.parent.parent):
        return path.parent.parent, os.fspath(path)
    return None


def _load_discriminator(run_dir: Any, ckpt: str | None) -> tuple[Any, float, dict]:
    """Builds a run's discriminator and restores it from ``ckpt`` (generator untouched)."""
    from colourise_tf.config import load_config
    from colourise_tf.models import build_discriminator

    cfg = load_config(run_dir / "config.json")
    info = {"preset": cfg.name}
    threshold = _threshold_for(cfg.loss.adversarial)
    if ckpt is None:
        return None, threshold, info
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    objects: dict[str, Any] = {"step": step}
    disc = build_discriminator(cfg.model)
    if disc is not None:
        objects["discriminator"] = disc
    status = tf.train.Checkpoint(**objects).read(ckpt).expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:  # e.g. a run trained without GAN loss: no D saved
        logger.warning("%s: discriminator not restored (%s); D accuracy skipped", ckpt, err)
        disc = None
    info["step"] = int(step.numpy())
    return disc, threshold, info


def load_eval_model(path: str | os.PathLike, name: str | None = None, *, with_discriminator: bool = True) -> EvalModel:
    """Loads a model for evaluation through :func:`colourise_tf.predictors.load_predictor`.

    Args:
        path: run directory, checkpoint prefix (``<run>/checkpoints/ckpt-N``),
            SavedModel directory or ``.tflite`` file; local or a URI (``gs://``,
            ``ram://``, ``file://``).
        name: table row label; default the run/export directory name, the ``.tflite``
            stem or ``<run>@ckpt-N``.
        with_discriminator: for run directories, also restore the discriminator to
            report its accuracy.

    Raises:
        EvaluationError: the path does not exist or cannot be loaded as a model.
    """
    from colourise_tf import predictors

    # A pathlib.Path for local paths, a path-like object with the same operations for URIs.
    path = predictors._as_path(path)
    try:
        found = path.exists() or tf.io.gfile.exists(os.fspath(path) + ".index")
    except tf.errors.OpError as err:  # e.g. no access to the bucket
        raise EvaluationError(f"cannot read model path {str(path)!r}: {err.message}") from err
    if not found:
        raise EvaluationError(
            f"model path {str(path)!r} does not exist (expected a run directory, a checkpoint "
            "prefix <run>/checkpoints/ckpt-N, a SavedModel directory or a .tflite file)"
        )
    if path.is_file() and path.name == "config.json":  # stands for its run directory
        path = path.parent
    elif path.is_file() and path.suffix == ".index":  # stands for its checkpoint prefix
        path = path.with_suffix("")
    try:
        predictor = predictors.load_predictor(path)
    except (OSError, ValueError, ImportError) as err:  # FileNotFoundError is an OSError
        raise EvaluationError(f"cannot load model {str(path)!r}: {err}") from err
    kinds = {
        "KerasPredictor": "run",
        "SavedModelPredictor": "savedmodel",
        "TFLitePredictor": "tflite",
    }
    info: dict[str, Any] = {
        "path": str(path),
        "kind": kinds.get(type(predictor).__name__, type(predictor).__name__),
        "colour_space": predictor.spec.colour_space,
        "model_size": int(predictor.spec.image_size),
        "stochastic": bool(getattr(predictor, "stochastic", False)),
    }
    cfg = getattr(predictor, "cfg", None)
    if cfg is not None:
        info["preset"] = cfg.name
    disc, threshold = None, 0.0
    run = _run_dir_and_checkpoint(path)
    if run is not None:
        run_dir, ckpt = run
        info["checkpoint"] = ckpt
        if with_discriminator:
            disc, threshold, extra = _load_discriminator(run_dir, ckpt)
            info.update(extra)
    return EvalModel(
        name=name or _default_name(path),
        predictor=predictor,
        discriminator=disc,
        d_threshold=threshold,
        info=info,
    )


def load_perceptual(weights: str | None) -> metrics.PerceptualDistance | None:
    """Builds the VGG19 perceptual distance, or ``None`` for ``weights`` None/"none".

    Raises:
        EvaluationError: the weights cannot be obtained (e.g. no internet for
            ``"imagenet"``, or a missing file); the message says how to skip Lperc.
    """
    if weights is None or str(weights).lower() == "none":
        return None
    if weights != "imagenet" and not Path(weights).expanduser().is_file():
        raise EvaluationError(
            f"--perceptual-weights {weights!r}: no such file (expected 'imagenet', 'none' or a "
            "local vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5)"
        )
    try:
        return metrics.PerceptualDistance(weights=weights if weights == "imagenet" else str(Path(weights).expanduser()))
    except Exception as err:  # keras raises a bare Exception on a failed download
        raise EvaluationError(
            f"cannot load the VGG19 weights for Lperc ({weights!r}): {err}\n"
            "Without internet access, either pass --perceptual-weights none to skip Lperc, or "
            "--perceptual-weights PATH to a local vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 "
            "(or copy that file into ~/.keras/models/)."
        ) from err


# ------------------------------------------------------------------- accumulators


class _Accumulator:
    """Running sums of per-image metrics, one colour histogram, D accuracy."""

    def __init__(self, bins: int, value_range: tuple[float, float]) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0
        self.hist = metrics.AbHistogram(bins, value_range)
        self.d_sums = None  # per-scale [real, fake] sums weighted by batch size
        self.d_n = 0

    def add(self, values: dict[str, tf.Tensor], ab: tf.Tensor) -> None:
        for key, v in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(np.sum(np.asarray(v, np.float64)))
        self.n += int(ab.shape[0])
        self.hist.update(ab)

    def add_d(self, acc_real: list, acc_fake: list, batch: int) -> None:
        vals = np.array([[float(r), float(f)] for r, f in zip(acc_real, acc_fake)]) * batch
        self.d_sums = vals if self.d_sums is None else self.d_sums + vals
        self.d_n += batch

    def means(self) -> dict[str, float]:
        return {k: v / self.n for k, v in self.sums.items()}


@tf.function(reduce_retracing=True)
def _pair_metrics(real_rgb: tf.Tensor, real_lab: tf.Tensor, fake_rgb: tf.Tensor, fake_lab: tf.Tensor):
    return {
        "psnr": metrics.psnr(real_rgb, fake_rgb),
        "ssim": metrics.ssim(real_rgb, fake_rgb),
        "l1": metrics.ab_l1(real_lab, fake_lab),
        "l2": metrics.ab_l2(real_lab, fake_lab),
        "colourfulness": metrics.colourfulness(fake_rgb),
    }


def _resize(x: tf.Tensor, size: int, method: str) -> tf.Tensor:
    if x.shape[1] == size and x.shape[2] == size:
        return x
    return tf.image.resize(x, (size, size), method=method, antialias=method == "area")


def _generate(
    model: EvalModel, images: tf.Tensor, size: int, seed: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(fake_rgb, fake_lab, g_in, chroma_small)`` of one batch of uint8 images at ``size``."""
    spec = model.predictor.spec
    grey, _ = colour.rgb_to_model(images, spec.colour_space)
    grey_small = _resize(grey, spec.image_size, "area")
    # Mask models get an empty mask (automatic colourisation); those that colour inside
    # the mask only (the IMPA project's target) get a full one, so they colour the whole image.
    full_mask = getattr(model.predictor, "colours_inside_mask_only", False)
    g_in = inference.generator_input(grey_small, spec, seed=seed, full_mask=full_mask)
    chroma_small = tf.cast(inference.pick_chroma(model.predictor.chroma(g_in), spec), tf.float32)
    if not bool(tf.reduce_all(tf.math.is_finite(chroma_small))):
        raise EvaluationError(
            f"model {model.name!r} produced NaN/Inf chroma (a broken export? for TFLite, are the weights frozen?)"
        )
    chroma = _resize(chroma_small, size, "bilinear")
    if spec.colour_space == "lab":
        fake_lab = colour.model_to_lab(grey, chroma)
        fake_rgb = colour.lab_to_rgb(fake_lab)
    else:
        fake_rgb = colour.model_to_rgb(grey, chroma, spec.colour_space)
        fake_lab = colour.rgb_to_lab(fake_rgb)
    return fake_rgb, fake_lab, g_in, chroma_small


def _d_accuracy(model: EvalModel, images: tf.Tensor, g_in: tf.Tensor, chroma_small: tf.Tensor):
    """Per-scale D accuracy on (L, real chroma) / (L, generated chroma) at model size."""
    spec = model.predictor.spec
    small = _resize(tf.image.convert_image_dtype(images, tf.float32), spec.image_size, "area")
    grey, real_chroma = colour.rgb_to_model(small, spec.colour_space)
    extra = [g_in[..., -3:-2]] if spec.mask_channel else []  # the mask channel G saw
    real_in = tf.concat([grey, real_chroma] + extra, axis=-1)
    fake_in = tf.concat([grey, chroma_small] + extra, axis=-1)
    d_real = model.discriminator(real_in, training=False)
    d_fake = model.discriminator(fake_in, training=False)

    def as_list(x):
        return [tf.cast(t, tf.float32) for t in (x if isinstance(x, (list, tuple)) else [x])]

    return metrics.discriminator_accuracy(as_list(d_real), as_list(d_fake), threshold=model.d_threshold)


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def _as_eval_model(m: EvalModel | ChromaPredictor | str | os.PathLike, with_discriminator: bool) -> EvalModel:
    if isinstance(m, EvalModel):
        return m
    if isinstance(m, (str, os.PathLike)):
        return load_eval_model(m, with_discriminator=with_discriminator)
    if isinstance(m, ChromaPredictor):
        return EvalModel(name=type(m).__name__, predictor=m, info={"kind": getattr(m, "source", "")})
    raise TypeError(f"cannot evaluate {m!r}: expected a path, an EvalModel or a predictor")


def _build_test_set(dataset: str, **kwargs) -> tf.data.Dataset:
    """:func:`build_dataset` with user-facing errors turned into :class:`EvaluationError`."""
    if dataset.startswith((".", "~", os.sep)) and not any(ch in dataset for ch in "*?["):
        if not Path(dataset).expanduser().exists():
            raise EvaluationError(f"--dataset {dataset!r}: no such file or directory")
    try:
        return build_dataset(dataset, **kwargs)
    except (ValueError, OSError) as err:  # OSError: missing files, failed TFDS downloads
        raise EvaluationError(
            f"cannot read the test set {dataset!r}: {err}\n(a TFDS dataset must be prepared in "
            "--data-dir, or its archives be in --manual-dir, when there is no internet access)"
        ) from err


def _unique_names(models: list[EvalModel]) -> None:
    seen: dict[str, int] = {}
    for m in models:
        base = m.name
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            m.name = f"{base} ({seen[base]})"


def _finish(
    name: str,
    size: int,
    acc: _Accumulator,
    real_hist: metrics.AbHistogram,
    ground_truth: dict,
    info: dict,
    baseline: bool = False,
) -> ModelResult:
    """Turns an accumulator into a :class:`ModelResult`."""
    means = acc.means()
    div = metrics.histogram_divergences(real_hist.result(), acc.hist.result())
    d_real = d_fake = None
    if acc.d_sums is not None:
        per_scale = acc.d_sums / acc.d_n
        d_real, d_fake = float(per_scale[:, 0].mean()), float(per_scale[:, 1].mean())
        info["d_accuracy_per_scale"] = [{"real": float(r), "fake": float(f)} for r, f in per_scale]
    out = {
        "l1": means["l1"],
        "l2": means["l2"],
        "psnr": means["psnr"],
        "ssim": means["ssim"],
        "lperc": means.get("lperc"),
        **div,
        "colourfulness": means["colourfulness"],
        "colourfulness_real": ground_truth["colourfulness"],
        "d_accuracy_real": d_real,
        "d_accuracy_fake": d_fake,
    }
    info["n_images"] = acc.n
    return ModelResult(name, size, out, acc.hist.result(normalize=False).numpy(), info, baseline)


# ------------------------------------------------------------------------ public


def evaluate_models(
    models: Sequence[EvalModel | ChromaPredictor | str | os.PathLike],
    *,
    dataset: str = "samples",
    split: str | None = None,
    image_size: int | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    perceptual_weights: str | None | metrics.PerceptualDistance = "imagenet",
    grey_baseline: bool = True,
    with_discriminator: bool = True,
    seed: int = 0,
    bins: int = 220,
    value_range: tuple[float, float] = (-110.0, 110.0),
    progress: bool = True,
) -> EvaluationResult:
    """Evaluates models on one test split (protocol in the module docstring).

    Args:
        models: paths (see :func:`load_eval_model`), :class:`EvalModel` objects or bare
            predictors.
        dataset: ``"samples"``, a folder / glob / file, or a TFDS name (see
            :func:`colourise_tf.data.build_dataset`).
        split: TFDS split; default ``"gorriz-test"`` for ``imagenet2012`` (Górriz et al. 2019's
            10 images per class), ``"test"`` for other TFDS datasets. Ignored for files.
        image_size: evaluation size for every model; default each model's own size
            (models of different sizes then get one pass over the data per size).
        batch_size: images per batch.
        limit: evaluate only the first ``limit`` images.
        data_dir, manual_dir: TFDS directories.
        perceptual_weights: VGG19 weights for Lperc: ``"imagenet"``, a local ``.h5``
            path, ``None`` to skip Lperc, or a prebuilt
            :class:`~colourise_tf.metrics.PerceptualDistance`.
        grey_baseline: add the ``L only (grey)`` reference row (chroma = 0).
        with_discriminator: report D accuracy for run directories given as paths.
        seed: seed of the noise channel of stochastic models.
        bins, value_range: a/b histogram bins (see
            :class:`~colourise_tf.metrics.AbHistogram`).
        progress: show a tqdm progress bar (stderr).

    Returns:
        An :class:`EvaluationResult`; call :meth:`EvaluationResult.save` to write it.

    Raises:
        EvaluationError: a model cannot be loaded or produces NaN, the VGG19 weights
            cannot be obtained, or the test set is missing, unreadable or empty.
    """
    if not models:
        raise EvaluationError("no model to evaluate")
    if limit is not None and limit < 1:
        raise EvaluationError(f"limit must be positive, got {limit}")
    if image_size is not None and image_size < 11:
        raise EvaluationError(f"image_size must be at least 11 (SSIM window), got {image_size}")
    is_files = dataset == "samples" or Path(dataset).expanduser().exists() or any(ch in dataset for ch in "*?[")
    if is_files:
        split = None
    elif split is None:
        split = "gorriz-test" if dataset.split(":")[0].split("/")[0] == "imagenet2012" else "test"
    perceptual = (
        perceptual_weights
        if isinstance(perceptual_weights, metrics.PerceptualDistance)
        else load_perceptual(perceptual_weights)
    )
    loaded = [_as_eval_model(m, with_discriminator) for m in models]
    _unique_names(loaded)

    groups: dict[int, list[EvalModel]] = {}
    for m in loaded:
        groups.setdefault(int(image_size or m.predictor.spec.image_size), []).append(m)

    results: dict[str, ModelResult] = {}
    baselines: list[ModelResult] = []
    ground_truth: dict[int, dict] = {}
    report = PipelineReport()
    n_images = 0
    value_range = (float(value_range[0]), float(value_range[1]))
    for size, group in groups.items():
        ds = _build_test_set(
            dataset,
            split=split or "test",
            image_size=size,
            batch_size=batch_size,
            training=False,
            seed=seed,
            data_dir=data_dir,
            manual_dir=manual_dir,
            repeat=False,
            drop_remainder=False,
            report=report if not ground_truth else PipelineReport(),
        )
        accs = {m.name: _Accumulator(bins, value_range) for m in group}
        grey_acc = _Accumulator(bins, value_range) if grey_baseline else None
        real_hist = metrics.AbHistogram(bins, value_range)
        real_colourfulness = 0.0
        seen = 0
        desc = f"evaluating {len(group)} model(s) @{size}px"
        with _progress(limit, desc, progress) as bar:
            for batch_index, batch in enumerate(ds):
                images = batch["image"]
                if limit is not None:
                    images = images[: limit - seen]
                b = int(images.shape[0])
                if b == 0:
                    break
                real_rgb = tf.image.convert_image_dtype(images, tf.float32)
                real_lab = colour.rgb_to_lab(images)
                real_hist.update(real_lab)
                real_colourfulness += float(tf.reduce_sum(metrics.colourfulness(real_rgb)))
                batch_seed = tf.constant([seed, batch_index], tf.int64)
                for m in group:
                    fake_rgb, fake_lab, g_in, chroma_small = _generate(m, images, size, batch_seed)
                    values = dict(_pair_metrics(real_rgb, real_lab, fake_rgb, fake_lab))
                    if perceptual is not None:
                        values["lperc"] = perceptual(real_rgb, fake_rgb)
                    accs[m.name].add(values, fake_lab)
                    if m.discriminator is not None and m.predictor.spec.image_size == size:
                        acc_real, acc_fake = _d_accuracy(m, images, g_in, chroma_small)
                        accs[m.name].add_d(acc_real, acc_fake, b)
                if grey_acc is not None:
                    grey_lab = tf.concat([real_lab[..., :1], tf.zeros_like(real_lab[..., 1:])], -1)
                    grey_rgb = colour.lab_to_rgb(grey_lab)
                    values = dict(_pair_metrics(real_rgb, real_lab, grey_rgb, grey_lab))
                    if perceptual is not None:
                        values["lperc"] = perceptual(real_rgb, grey_rgb)
                    grey_acc.add(values, grey_lab)
                seen += b
                bar.update(b)
                if limit is not None and seen >= limit:
                    break
        if seen == 0:
            raise EvaluationError(
                f"no colour images in {dataset!r}" + (f" split {split!r}" if split else "") + f" ({report.summary()})"
            )
        n_images = max(n_images, seen)
        real_counts = real_hist.result(normalize=False).numpy()
        ground_truth[size] = {
            "colourfulness": real_colourfulness / seen,
            "histogram": real_counts,
            "n_images": seen,
        }

        for m in group:
            res = _finish(m.name, size, accs[m.name], real_hist, ground_truth[size], dict(m.info))
            if m.discriminator is not None:
                res.info["d_threshold"] = m.d_threshold
                if res.metrics["d_accuracy_real"] is None:
                    res.info["d_accuracy_note"] = "the discriminator runs at model size only"
            results[m.name] = res
        if grey_acc is not None:
            label = GREY_BASELINE_NAME if len(groups) == 1 else f"{GREY_BASELINE_NAME} @{size}"
            info = {"kind": "baseline", "chroma": "zero"}
            baselines.append(_finish(label, size, grey_acc, real_hist, ground_truth[size], info, True))

    perc_setting = None if perceptual is None else str(perceptual.weights or "random (tests only)")
    settings = {
        "dataset": dataset,
        "split": split,
        "image_size": image_size,
        "batch_size": batch_size,
        "limit": limit,
        "data_dir": data_dir,
        "manual_dir": manual_dir,
        "perceptual_weights": perc_setting,
        "grey_baseline": grey_baseline,
        "seed": seed,
        "histogram_bins": bins,
        "histogram_range": list(value_range),
        "divergences": "JS(real, generated) and KL(real || generated), nats, normalised histograms",
        "versions": {"tensorflow": tf.__version__, "keras": _keras_version()},
    }
    dataset_info = {
        "source": dataset,
        "split": split,
        "n_images": n_images,
        "skipped_files": len(report.skipped),
        "skipped_grey": len(report.grey),
    }
    return EvaluationResult(
        settings=settings,
        dataset=dataset_info,
        models=[results[m.name] for m in loaded],
        baselines=baselines,
        ground_truth=ground_truth,
        bin_edges=np.linspace(value_range[0], value_range[1], bins + 1),
    )


def _keras_version() -> str:
    import keras

    return keras.__version__
