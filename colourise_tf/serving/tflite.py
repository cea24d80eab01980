"""TFLite export of the generator for devices, in four numeric variants.

``export_tflite(run_dir, "exports/tflite")`` writes, for ``name`` (default: the
experiment name)::

    <out>/<name>_float32.tflite        float32 weights and activations
    <out>/<name>_float16.tflite        float16 weights (dequantised at load), float32 maths
    <out>/<name>_dynamic_int8.tflite   int8 weights, activations quantised on the fly
    <out>/<name>_int8.tflite           full integer: int8 weights and activations,
                                       calibrated on the input pipeline; float32 I/O
                                       (int8 I/O with ``integer_io=True``)
    <out>/<name>.json                  sidecar: what a loader needs (see below)
    <out>/<name>_conversion.log        the converter's own messages, per variant

Each model has a fixed input ``[1, S, S, C_in]`` (S = the model's native size)
named ``L`` when ``C_in == 1`` and ``generator_input`` otherwise (channels L,
[noise], [mask, hint chroma], all network range ``[-1, 1]``) and one output ``ab``
``[1, S, S, 2]`` (network range; for ``yuv`` models it is 2 * (U, V)). Only the
generator is converted: the resize to S x S and back and the recombination with
the original full-resolution L happen on the host, e.g. with
:func:`tflite_chroma_fn` + :func:`colourise_tf.inference.colourise_grey`.

The sidecar ``<name>.json`` holds ``image_size``, ``colour_space``,
``noise_channel``, ``mask_channel``, ``mask_target`` (mask models: ``"partial"``
when the model colours inside its mask only), ``n_classes``, ``preset``,
``input_name``, ``output_name`` and, per variant, the file, its size, I/O dtypes and
quantisation parameters, and the operators in the flatbuffer (with the ones that
still compute in float in a quantised model listed as ``float_ops``).

The run directory, ``<out>`` and the paths given to :func:`read_sidecar`,
:func:`load_interpreter`, :func:`model_ops` and :func:`tflite_chroma_fn` may be URIs
of any file system TensorFlow knows (``gs://bucket/tflite``, ``ram://``; ``file:///x``
is the local ``/x``): the outputs are written through ``tf.io.gfile``. The SavedModel
the converter reads and the int8 child process's files stay in local temporary
folders.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import posixpath
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from colourise_tf import colour, fileio, inference
from colourise_tf.config import ExperimentConfig, save_config
from colourise_tf.fileio import atomic_write_bytes
from colourise_tf.formats import run_dir as run_dir_format
from colourise_tf.formats import tflite_files
from colourise_tf.formats.model_description import describe_model
from colourise_tf.models import generator_input_channels
from colourise_tf.predictors import TFLiteRunner
from colourise_tf.runs import LoadedRun, load_run

__all__ = [
    "VARIANTS",
    "DEFAULT_CALIBRATION_STEPS",
    "TFLiteConversionError",
    "export_tflite",
    "convert_generator",
    "representative_inputs",
    "load_interpreter",
    "tflite_chroma_fn",
    "model_ops",
    "read_sidecar",
]

VARIANTS = tflite_files.VARIANTS
DEFAULT_CALIBRATION_STEPS = 64
SIDECAR_VERSION = 2  # 2: mask_target
OUTPUT_NAME = "ab"
SIGNATURE_KEY = "serving_default"
_PASS_THROUGH_OPS = {"QUANTIZE", "DEQUANTIZE"}


class TFLiteConversionError(RuntimeError):
    """A conversion failed, crashed, or gave a model that is not what was asked
    for; the message quotes the converter's own error lines."""


def input_name_for(cfg: ExperimentConfig) -> str:
    """``"L"`` for a grey-only generator, ``"generator_input"`` otherwise."""
    return "L" if generator_input_channels(cfg.model) == 1 else "generator_input"


def _generator_function(generator: keras.Model, cfg: ExperimentConfig) -> tf.types.experimental.GenericFunction:
    """A fixed-shape ``tf.function`` ``{input_name: x} -> {"ab": chroma}``."""
    spec = inference.ModelSpec.from_model_config(cfg.model)
    s, c_in = cfg.model.image_size, generator_input_channels(cfg.model)

    def run(x):
        return {OUTPUT_NAME: inference.pick_chroma(generator(x, training=False), spec)}

    return _named_function(run, [1, s, s, c_in], input_name_for(cfg))


def _named_function(run: Callable, shape: list[int], input_name: str):
    # The Python argument name becomes the TFLite signature's input key.
    if input_name == "L":

        def fn(L):  # noqa: N803
            return run(L)

    else:

        def fn(generator_input):
            return run(generator_input)

    return tf.function(fn, input_signature=[tf.TensorSpec(shape, tf.float32, name=input_name)])


def _frozen_function(generator: keras.Model, cfg: ExperimentConfig) -> tuple[list, tf.Module]:
    """``([concrete function], trackable)`` for ``from_concrete_functions``, with
    the weights frozen to constants.

    Why: converting the generator's function directly (or a SavedModel of it)
    with TF 2.21 / Keras 3 keeps every weight as a resource variable
    (``VAR_HANDLE`` / ``READ_VARIABLE`` ops): batch norm is not folded and the
    quantisers leave the weights in float (the dynamic-range model came out the
    same size as the float32 one). Freezing first gives plain constants; the
    wrapper function restores the named signature (``L`` -> ``ab``).
    """
    fn = _generator_function(generator, cfg)
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    s, c_in = cfg.model.image_size, generator_input_channels(cfg.model)
    wrapper = _named_function(lambda x: {OUTPUT_NAME: frozen(x)[0]}, [1, s, s, c_in], input_name_for(cfg))
    holder = tf.Module()
    holder.fn = wrapper
    return [wrapper.get_concrete_function()], holder


def representative_inputs(
    cfg: ExperimentConfig,
    steps: int = DEFAULT_CALIBRATION_STEPS,
    source: str = "samples",
    seed: int = 0,
) -> Iterator[np.ndarray]:
    """Generator inputs for int8 calibration, from the input pipeline.

    The first pass is the evaluation pipeline (``training=False``: resize + centre
    crop, each image once); further steps come from the training pipeline (random
    scale, crop and flip, seeded), so a small source still gives ``steps``
    distinct inputs. Grey via :func:`colourise_tf.colour.rgb_to_model`; the noise
    channel uses the serving seed (0, 0); mask models get the pipeline's random
    masks with the true chroma as hints inside them (no hints for
    ``loss.mask_target=partial``, as in training).

    Yields:
        float32 ``[1, S, S, C_in]`` arrays.
    """
    from colourise_tf import data as data_lib

    spec = inference.ModelSpec.from_model_config(cfg.model)
    mask_only = inference.colours_inside_mask_only(spec, cfg)
    kw = dict(image_size=spec.image_size, batch_size=1, masks=spec.mask_channel, seed=seed)
    ds = data_lib.build_dataset(source, training=False, repeat=False, **kw).concatenate(
        data_lib.build_dataset(source, training=True, **kw)
    )
    for ex in ds.take(steps):
        grey, chroma = colour.rgb_to_model(ex["image"], spec.colour_space)
        mask = ex.get("mask")
        hints = None if mask is None or mask_only else chroma * mask
        x = inference.generator_input(grey, spec, mask_small=mask, hints_small=hints)
        yield x.numpy().astype(np.float32)


@contextlib.contextmanager
def _capture_output(sink: list[str]):
    """Captures Python and C++ (file-descriptor level) stdout/stderr into ``sink``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            for fd in (1, 2):
                os.dup2(tmp.fileno(), fd)
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, old in saved.items():
                os.dup2(old, fd)
                os.close(old)
            tmp.seek(0)
            sink.append(buf.getvalue() + tmp.read().decode("utf-8", "replace"))


def convert_generator(
    generator: keras.Model,
    cfg: ExperimentConfig,
    variant: str,
    *,
    calibration_steps: int = DEFAULT_CALIBRATION_STEPS,
    calibration_source: str = "samples",
    integer_io: bool = False,
    log: list[str] | None = None,
) -> bytes:
    """Converts a generator to a TFLite flatbuffer.

    Args:
        generator: the Keras generator.
        cfg: its experiment config.
        variant: one of :data:`VARIANTS`.
        calibration_steps: representative inputs for ``int8``.
        calibration_source: any :func:`colourise_tf.data.build_dataset` source.
        integer_io: ``int8`` only: int8 input/output tensors (quantisation
            parameters in the sidecar) instead of float32.
        log: if given, the converter's output (Python and C++) is captured and
            appended to it; otherwise it goes to stdout/stderr.

    Raises:
        ValueError: unknown variant.
        TFLiteConversionError: the converted model lacks its ``serving_default``
            signature.
        tf.lite ConverterError: an op cannot be converted with TFLite builtins (the
            message is the converter's; Select TF ops are deliberately not enabled:
            the ``ai-edge-litert`` wheel has no Flex delegate).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; choose from {VARIANTS}")
    with tempfile.TemporaryDirectory(prefix="colourise_tflite_") as saved_model_dir:
        _save_frozen_saved_model(generator, cfg, saved_model_dir)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[SIGNATURE_KEY])
        model = _run_converter(converter, cfg, variant, calibration_steps, calibration_source, integer_io, log)
    _check_signature(model, cfg)
    return model


def _save_frozen_saved_model(generator: keras.Model, cfg: ExperimentConfig, path: str) -> None:
    """Writes the frozen generator function as a SavedModel with one signature.

    ``TFLiteConverter.from_concrete_functions`` does this itself, but when its save
    fails it silently falls back to a path that writes a model without signatures
    (a deep U-Net whose graph held a custom gradient did; the model had no
    ``serving_default`` and the export could not run it). Saving here makes any
    such failure an error with TensorFlow's own message.
    """
    funcs, holder = _frozen_function(generator, cfg)
    tf.saved_model.save(holder, path, signatures={SIGNATURE_KEY: funcs[0]})


def _check_signature(model: bytes, cfg: ExperimentConfig) -> None:
    """Raises :class:`TFLiteConversionError` unless ``model`` has exactly the signature
    ``serving_default: {input_name} -> ab``."""
    from ai_edge_litert.interpreter import Interpreter

    want = {SIGNATURE_KEY: {"inputs": [input_name_for(cfg)], "outputs": [OUTPUT_NAME]}}
    got = Interpreter(model_content=model).get_signature_list()
    if got != want:
        raise TFLiteConversionError(f"the converted model's signatures are {got}, expected {want}")


def _run_converter(converter, cfg, variant, calibration_steps, calibration_source, integer_io, log) -> bytes:
    """Sets ``converter`` up for ``variant`` and converts (see :func:`convert_generator`)."""
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [x] for x in representative_inputs(cfg, calibration_steps, calibration_source)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if integer_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    if log is None:  # messages go to this process's stdout/stderr
        return converter.convert()
    sink: list[str] = []
    try:
        with _capture_output(sink):
            model = converter.convert()
    finally:
        log.append(f"===== {variant} =====\n" + "".join(sink))
    return model


def load_interpreter(
    model: str | os.PathLike | bytes, num_threads: int | None = None, *, default_delegates: bool = True
):
    """A LiteRT ``Interpreter`` (``ai_edge_litert``) for a path or flatbuffer bytes,
    tensors allocated. ``default_delegates=False`` keeps XNNPACK from replacing
    nodes (to list the model's own operators). A URI path (``gs://``) is read into
    memory first: the interpreter opens local files only."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if default_delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    kw = dict(num_threads=num_threads, experimental_op_resolver_type=resolver)
    if not isinstance(model, (bytes, bytearray)) and fileio.is_remote(model):
        model = fileio.read_bytes(model)
    if isinstance(model, (bytes, bytearray)):
        interp = Interpreter(model_content=bytes(model), **kw)
    else:
        interp = Interpreter(model_path=fileio.normalize(model), **kw)
    interp.allocate_tensors()
    return interp


def model_ops(model: str | os.PathLike | bytes) -> list[dict[str, Any]]:
    """The operators of a TFLite model in execution order, each as
    ``{"op": name, "dtypes": [output tensor dtypes]}``."""
    interp = load_interpreter(model, default_delegates=False)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = []
    for op in interp._get_ops_details():  # the public API has no op listing
        dtypes = [np.dtype(tensors[i]["dtype"]).name for i in op["outputs"] if i in tensors]
        ops.append({"op": op["op_name"], "dtypes": dtypes})
    return ops


def _op_summary(model: bytes) -> dict[str, Any]:
    ops = model_ops(model)
    float_ops = sorted(
        {o["op"] for o in ops if o["op"] not in _PASS_THROUGH_OPS and any(d.startswith("float") for d in o["dtypes"])}
    )
    return {"ops": sorted({o["op"] for o in ops}), "n_ops": len(ops), "float_ops": float_ops}


def _io_details(model: bytes) -> dict[str, Any]:
    interp = load_interpreter(model)
    runner = interp.get_signature_runner()
    out = {}
    for kind, details in (("input", runner.get_input_details()), ("output", runner.get_output_details())):
        ((name, d),) = details.items()
        scale, zero = d.get("quantization", (0.0, 0))
        out[kind] = {
            "name": name,
            "shape": [int(v) for v in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "quantization": [float(scale), int(zero)] if scale else None,
        }
    return out


def sidecar_base(cfg: ExperimentConfig) -> dict[str, Any]:
    """The loader-facing fields of ``<name>.json``."""
    return {
        "format_version": SIDECAR_VERSION,
        "kind": "tflite",
        **describe_model(cfg),
        "input_name": input_name_for(cfg),
        "output_name": OUTPUT_NAME,
        "input_range": [-1.0, 1.0],
        "output_range": [-1.0, 1.0],
        "noise_seed": [0, 0] if cfg.model.noise_channel else None,
    }


def export_tflite(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    variants: Sequence[str] = VARIANTS,
    *,
    name: str | None = None,
    calibration_steps: int = DEFAULT_CALIBRATION_STEPS,
    calibration_source: str = "samples",
    integer_io: bool = False,
    isolate_int8: bool = True,
) -> dict[str, Path | str]:
    """Converts a run's generator to ``<out_dir>/<name>_<variant>.tflite``.

    Args:
        source: run directory or checkpoint prefix; local or a URI (``gs://``,
            ``ram://``, ``file://``).
        out_dir: output directory (created); local or a URI.
        variants: any of :data:`VARIANTS`.
        name: file stem; default the experiment name (``cfg.name``).
        calibration_steps: representative inputs for the ``int8`` variant.
        calibration_source: ``build_dataset`` source for calibration.
        integer_io: int8 input/output for the ``int8`` variant.
        isolate_int8: run the full-integer quantiser in a child process. It has
            crashed the whole process (SIGSEGV in ``mlir_quantize``) on models with
            extreme weight ranges; isolated, that becomes a
            :class:`TFLiteConversionError` with the converter's messages.

    Returns:
        ``{variant: path}`` of the written models (:class:`pathlib.Path` for a local
        ``out_dir``, URI strings otherwise). The sidecar ``<name>.json`` is
        updated: variants exported earlier under the same name are kept if they come
        from the same checkpoint and configuration; otherwise their files are removed
        (a model must never sit beside a sidecar that describes another one).

    Raises:
        ValueError: unknown variant or bad name.
        ConverterError: as :func:`convert_generator`; the log file keeps the
            converter's messages.
        TFLiteConversionError: the int8 quantiser crashed, or its model does
            not run (nothing is written for that variant). Operators it kept in
            float are only logged and listed in the sidecar's ``float_ops``.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"unknown TFLite variant(s) {unknown}; choose from {VARIANTS}")
    run = load_run(source)
    name = name or run.cfg.name
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"invalid name {name!r}")
    out = fileio.normalize(out_dir)
    fileio.makedirs(out)
    sidecar_path = fileio.join(out, tflite_files.sidecar_file(name))
    try:
        previous = read_sidecar(sidecar_path) if _is_file(sidecar_path) else {}
    except (OSError, ValueError, tf.errors.OpError):  # unreadable: replaced by the new one
        previous = {}
    previous = previous if isinstance(previous, dict) else {}
    sidecar = {**sidecar_base(run.cfg), "step": run.step, "checkpoint": run.checkpoint}
    # Earlier variants stay only if they are the same model: same checkpoint and the
    # same loader-facing fields (image size, channels...). Otherwise their files go once
    # the new ones are written, so that no .tflite is left beside a sidecar not its own.
    same_model = all(previous.get(k) == v for k, v in sidecar.items())
    earlier = previous.get("variants", {}) if isinstance(previous.get("variants"), dict) else {}
    kept = earlier if same_model else {}
    stale = [] if same_model else [e.get("file") for v, e in earlier.items() if v not in variants]
    sidecar["variants"] = dict(kept)
    log: list[str] = []
    paths: dict[str, Path | str] = {}
    try:
        for variant in variants:
            in_child = variant == "int8" and isolate_int8
            child_error = None
            if in_child:
                model, child_error = _convert_int8_in_subprocess(
                    source,
                    calibration_steps=calibration_steps,
                    calibration_source=calibration_source,
                    integer_io=integer_io,
                    log=log,
                    run=run,
                )
            else:
                model = convert_generator(
                    run.generator,
                    run.cfg,
                    variant,
                    calibration_steps=calibration_steps,
                    calibration_source=calibration_source,
                    integer_io=integer_io,
                    log=log,
                )
            summary = _op_summary(model)
            if variant == "int8":
                _check_int8(model, summary, log, ran_in_child=in_child, child_error=child_error)
            file = tflite_files.model_file(name, variant)
            path = fileio.local_path_or_uri(fileio.join(out, file))
            atomic_write_bytes(path, model)
            paths[variant] = path
            entry: dict[str, Any] = {
                "file": file,
                "bytes": len(model),
                "step": run.step,
                **_io_details(model),
                **summary,
            }
            if variant == "int8":
                entry["calibration"] = {"source": calibration_source, "steps": calibration_steps}
            sidecar["variants"][variant] = entry
    finally:
        if log:
            atomic_write_bytes(fileio.join(out, f"{name}_conversion.log"), "\n".join(log).encode("utf-8"))
        if paths:
            atomic_write_bytes(sidecar_path, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode("utf-8"))
            _remove_stale(out, stale)
    return paths


def _is_file(path: str | os.PathLike) -> bool:
    """``path`` (local or a URI) exists and is not a folder."""
    return fileio.exists(path) and not fileio.isdir(path)


def _remove_stale(out: str | os.PathLike, files: Sequence[str | None]) -> None:
    """Deletes earlier exports of another model named in the replaced sidecar."""
    for file in files:
        if not file or Path(file).name != file or not file.endswith(".tflite"):
            continue  # only plain .tflite names inside ``out``
        path = fileio.join(out, file)
        if _is_file(path):
            fileio.remove(path)
            logging.getLogger(__name__).warning(
                "removed %s: exported from another checkpoint or configuration than the new "
                "%s (its sidecar entry is gone)",
                path,
                out,
            )


def _invoke_once(model: bytes) -> None:
    """Runs ``model`` once on zeros (raises RuntimeError/ValueError if it cannot)."""
    interp = load_interpreter(model)
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    interp.invoke()


def _check_int8(
    model: bytes, summary: dict[str, Any], log: list[str], *, ran_in_child: bool = False, child_error: str | None = None
) -> None:
    """Fails if the int8 model does not run; warns about operators left in float.

    With ``TFLITE_BUILTINS_INT8`` the converter does not always refuse what it
    cannot quantise: it may keep an operator in float between DEQUANTIZE and
    QUANTIZE, silently (instance norm's NEG and SQUARE), or after printing
    ``error: scale out of expressed type range`` (extreme ranges), and in that
    second case XNNPACK cannot even prepare the model - or, now and then, aborts
    the process trying. A model converted in the child process was therefore
    already run there (``ran_in_child``; ``child_error`` is what running it raised)
    and is not run again here.
    """
    converter_errors = [ln.strip() for ln in (log[-1] if log else "").splitlines() if "error:" in ln.lower()]
    try:
        if ran_in_child:
            if child_error:
                raise RuntimeError(child_error)
        else:
            _invoke_once(model)
    except (RuntimeError, ValueError) as e:
        raise TFLiteConversionError(
            f"int8: the converted model does not run ({e}); operators left in float: {summary['float_ops']}; "
            f"converter said: {converter_errors or 'nothing'}. Extreme weight or activation ranges cause this "
            "(e.g. spectral-norm u/v out of step with the kernels)."
        ) from e
    if summary["float_ops"]:
        logging.getLogger(__name__).warning(
            "int8: operators kept in float (between DEQUANTIZE/QUANTIZE): %s; converter said: %s",
            summary["float_ops"],
            converter_errors or "nothing",
        )


_CHILD = """
import sys
sys.path.insert(0, {root!r})
from colourise_tf.serving.tflite import _child_convert_int8
_child_convert_int8(*sys.argv[1:])
"""


def _convert_int8_in_subprocess(
    source: str | os.PathLike,
    *,
    calibration_steps: int,
    calibration_source: str,
    integer_io: bool,
    log: list[str],
    run: LoadedRun | None = None,
) -> tuple[bytes, str | None]:
    """Runs :func:`convert_generator` (``int8``) in a child Python process, which
    also runs the model once. Returns the model and the error running it raised
    (``None`` if it ran); a crash of either step raises ``TFLiteConversionError``.

    A URI ``source`` (``gs://``, ``ram://``) is not handed to the child: it gets a
    local temporary copy of the run (the parent's ``run``: its config and the files of
    the checkpoint it loaded). Chosen over converting in this process so that a crash
    of the quantiser stays isolated for every source; and a ``ram://`` file system
    lives in this process's memory, the child could not read it at all.
    """
    import subprocess

    root = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory(prefix="colourise_int8_") as tmp:
        model_path = Path(tmp) / "model.tflite"
        child_source = fileio.normalize(source)
        if fileio.is_remote(child_source):
            child_source = _local_run_copy(run if run is not None else load_run(source), Path(tmp) / "run")
        elif run is not None and run.checkpoint:
            # The checkpoint the parent loaded (and the sidecar names), not whatever is
            # latest by the time the child starts (training may still be writing).
            child_source = run.checkpoint
        args = [
            sys.executable,
            "-X",
            "faulthandler",
            "-c",
            _CHILD.format(root=root),
            child_source,
            str(model_path),
            str(calibration_steps),
            calibration_source,
            "1" if integer_io else "0",
        ]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}  # all of it goes to the conversion log
        proc = subprocess.run(args, capture_output=True, text=True, env=env)
        log.append("===== int8 (child process) =====\n" + proc.stdout + proc.stderr)
        if proc.returncode != 0 or not model_path.is_file():
            lines = (proc.stdout + proc.stderr).splitlines()
            errors = [ln.strip() for ln in lines if "error:" in ln.lower()]
            # faulthandler's innermost frame names the converter stage that crashed.
            errors += [lines[i + 1].strip() for i, ln in enumerate(lines[:-1]) if "most recent call first" in ln]
            code = proc.returncode
            how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
            raise TFLiteConversionError(
                f"int8 conversion {how}; converter said: {errors[-10:] or proc.stderr.strip()[-2000:]}"
            )
        error_path = model_path.with_name(model_path.name + ".error")
        return model_path.read_bytes(), (error_path.read_text() if error_path.is_file() else None)


def _local_run_copy(run: LoadedRun, run_dir: Path) -> str:
    """Writes ``run_dir/config.json`` (``run.cfg``) and copies the files of
    ``run.checkpoint`` (``.index``, ``.data-*``) into ``run_dir/checkpoints/``.

    Returns:
        The local checkpoint prefix, which :func:`load_run` loads as ``run``.
    """
    save_config(run.cfg, run_dir_format.config_path(run_dir))
    checkpoints = Path(run_dir_format.checkpoint_dir(run_dir))
    checkpoints.mkdir(parents=True, exist_ok=True)
    prefix = run.checkpoint
    stem = posixpath.basename(prefix)
    for file in tf.io.gfile.glob(f"{prefix}.*"):
        name = posixpath.basename(file)
        if name == f"{stem}.index" or name.startswith(f"{stem}.data-"):
            (checkpoints / name).write_bytes(fileio.read_bytes(file))
    return str(checkpoints / stem)


def _child_convert_int8(source: str, model_path: str, steps: str, calibration_source: str, integer_io: str) -> None:
    # No output capture here: if the quantiser crashes, the parent still gets
    # everything it printed through the pipe.
    run = load_run(source)
    model = convert_generator(
        run.generator,
        run.cfg,
        "int8",
        calibration_steps=int(steps),
        calibration_source=calibration_source,
        integer_io=integer_io == "1",
    )
    try:
        _invoke_once(model)
    except (RuntimeError, ValueError) as e:
        Path(model_path + ".error").write_text(str(e))
    Path(model_path).write_bytes(model)


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """Reads ``<name>.json`` (a path to the json, or to one of its ``.tflite`` files;
    local or a URI)."""
    path = fileio.normalize(path)
    remote = fileio.is_remote(path)
    name = posixpath.basename(path) if remote else Path(path).name
    if name.endswith(".tflite") and len(name) > len(".tflite"):
        stem = tflite_files.strip_variant(name[: -len(".tflite")])
        if remote:
            path = posixpath.join(posixpath.dirname(path), tflite_files.sidecar_file(stem))
        else:
            path = str(Path(path).with_name(tflite_files.sidecar_file(stem)))
    return json.loads(fileio.read_text(path))


def tflite_chroma_fn(model: str | os.PathLike | bytes, num_threads: int | None = None) -> Callable:
    """A ``chroma_fn`` for :func:`colourise_tf.inference.colourise_grey` that runs a
    ``.tflite`` generator (eagerly; batches are run one image at a time).

    Runs through :class:`colourise_tf.predictors.TFLiteRunner`, which (de)quantises
    int8 inputs and outputs with their parameters.
    """
    interp = load_interpreter(model, num_threads=num_threads)
    inputs, outputs = interp.get_input_details(), interp.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"expected a generator with one input and one output, got {len(inputs)} and {len(outputs)}")
    run = TFLiteRunner(interp, inputs[0], outputs[0])

    def fn(x) -> tf.Tensor:
        return tf.constant(run.run_batch(np.asarray(x, np.float32)))

    return fn
