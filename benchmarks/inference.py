"""Inference latency: SavedModel serving path vs bare generator vs TFLite variants.

A freshly built generator (random weights) of ``--preset`` at ``--size`` is saved
into a temporary run directory, exported as a SavedModel and as the four TFLite
variants, then timed: medians over ``--repeats`` rounds after ``--warmup`` calls,
every round calling each of the following once (interleaved, so that load from
other processes on a shared machine affects all of them alike):

* ``serving_default`` end to end on ONE 1024x768 JPEG (decode, L, resize, G,
  resize back, recombine with the original L, sRGB, PNG encode);
* ``predict_ab`` on the same image's L (the same path without decode/encode);
* the ``generator`` signature on one S x S input (the bare network) -> the
  pre/post-processing overhead ratio ``serving_default / generator``;
* the serving stages alone on that image (decode, rgb_to_lab, lab_to_rgb, PNG and
  JPEG encode), to show where the overhead goes;
* each ``.tflite`` on one S x S input with the LiteRT interpreter (XNNPACK,
  ``--threads``), as a ratio to the SavedModel ``generator`` signature, with file
  sizes and ΔE76 (mean, p99) against the Keras model on the sample photos (chroma
  recombined with each photo's own L, full resolution) and CIEDE2000 (scikit-image).

    python benchmarks/inference.py                          # gorriz-ibn-sn-md at 256
    python benchmarks/inference.py --preset tiny --size 32 --repeats 3 --out /tmp/x.json
    python benchmarks/inference.py --run runs/gorriz-ibn-sn-md --out benchmarks/results/inference_make_train.json

Writes ``benchmarks/results/inference.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gorriz-ibn-sn-md")
    p.add_argument("--size", type=int, default=256, help="model image size S")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="LiteRT interpreter threads")
    p.add_argument("--calibration-steps", type=int, default=64, help="int8 calibration inputs (the export default)")
    p.add_argument("--image", nargs=2, type=int, default=[1024, 768], metavar=("W", "H"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "inference.json"))
    p.add_argument("--run", default=None, help="a trained run directory to export and time instead of random weights")
    p.add_argument("--keep-exports", default=None, help="write the run dir and exports here instead of a temp dir")
    args = p.parse_args()

    import numpy as np
    import tensorflow as tf
    from PIL import Image
    from skimage.color import deltaE_ciede2000

    from colourise_tf import colour, inference
    from colourise_tf.config import apply_overrides, get_preset, save_config
    from colourise_tf.data import load_samples
    from colourise_tf.models import build_generator
    from colourise_tf.serving import savedmodel as sm
    from colourise_tf.serving import tflite as tl

    started = time.time()
    load_before = os.getloadavg()
    if args.run:
        from colourise_tf.runs import load_run

        loaded_run = load_run(args.run)
        cfg, generator = loaded_run.cfg, loaded_run.generator
        args.preset, args.size = cfg.name, cfg.model.image_size
    else:
        cfg = apply_overrides(get_preset(args.preset), [f"model.image_size={args.size}"])
        tf.keras.utils.set_random_seed(0)
        generator = build_generator(cfg.model)
    spec = inference.ModelSpec.from_model_config(cfg.model)
    s = args.size
    result: dict = {
        "preset": args.preset,
        "image_size": s,
        "weights": f"trained run {args.run} (step {loaded_run.step})"
        if args.run
        else "random (freshly built generator)",
        "g_params": int(generator.count_params()),
        "input_image": {"format": "JPEG", "width": args.image[0], "height": args.image[1]},
        "repeats": args.repeats,
        "warmup": args.warmup,
        "tflite_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
    }

    keep = Path(args.keep_exports) if args.keep_exports else None
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        tmp = keep or Path(tmp)
        if args.run:
            run_dir = Path(args.run)
        else:
            run_dir = tmp / "run"
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.json")
            ckpt = tf.train.Checkpoint(generator=generator, step=tf.Variable(0, dtype=tf.int64))
            tf.train.CheckpointManager(ckpt, str(run_dir / "checkpoints"), 1).save()

        # 1. Exports.
        t = time.perf_counter()
        export_dir = sm.export_savedmodel(run_dir, tmp / "serving")
        result["savedmodel"] = {"export_s": round(time.perf_counter() - t, 1), "bytes": _dir_bytes(export_dir)}
        t = time.perf_counter()
        paths = tl.export_tflite(run_dir, tmp / "tflite", calibration_steps=args.calibration_steps)
        result["tflite_export_s"] = round(time.perf_counter() - t, 1)
        sidecar = tl.read_sidecar(tmp / "tflite" / f"{cfg.name}.json")
        loaded = tf.saved_model.load(str(export_dir))

        # 2. Inputs.
        photo = load_samples()[0][1]
        rgb = np.asarray(Image.fromarray(photo).resize(tuple(args.image), Image.BICUBIC))
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=90)
        jpeg = tf.constant([buf.getvalue()])
        lightness = colour.rgb_to_lab(rgb[np.newaxis])[..., :1]
        grey_small = tf.image.resize(colour.normalize_l(lightness), (s, s), method="area", antialias=True)
        g_in = inference.generator_input(grey_small, spec)
        x = g_in.numpy().astype(np.float32)
        rgb_t = tf.constant(rgb[np.newaxis])
        lab_t = colour.rgb_to_lab(rgb_t)
        u8 = tf.constant(rgb)

        # 3. Every timed call, measured interleaved (one round = each call once) so
        #    that load from other processes on this shared machine hits all alike.
        serve = loaded.signatures["serving_default"]
        predict_ab = loaded.signatures["predict_ab"]
        gen = loaded.signatures["generator"]
        calls = {
            "serving_default_jpeg": lambda: serve(images=jpeg)["images"].numpy(),
            "predict_ab_full_res": lambda: predict_ab(L=lightness)["ab"].numpy(),
            "generator_signature": lambda: gen(grey=g_in)["chroma"].numpy(),
        }
        # Where the end-to-end time goes: each serving stage alone.
        stages = {
            "decode_jpeg": tf.function(lambda: tf.io.decode_image(jpeg[0], channels=3, expand_animations=False)),
            "rgb_to_lab": tf.function(lambda: colour.rgb_to_lab(rgb_t)),
            "lab_to_rgb": tf.function(lambda: colour.lab_to_rgb(lab_t)),
            f"encode_png_level{sm.DEFAULT_PNG_COMPRESSION}": tf.function(
                lambda: tf.io.encode_png(u8, compression=sm.DEFAULT_PNG_COMPRESSION)
            ),
            "encode_png_level6_zlib_default": tf.function(lambda: tf.io.encode_png(u8, compression=6)),
            "encode_jpeg_q95": tf.function(lambda: tf.io.encode_jpeg(u8, quality=95)),
        }
        for k, f in stages.items():
            calls["stage/" + k] = lambda f=f: f().numpy()
        name_in = sidecar["input_name"]
        for variant, path in paths.items():
            runner = tl.load_interpreter(path, num_threads=args.threads).get_signature_runner()
            calls["tflite/" + variant] = lambda r=runner: r(**{name_in: x})
        for fn in calls.values():
            for _ in range(args.warmup):
                fn()
        times: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(args.repeats):
            for k, fn in calls.items():
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        summary = lambda k: {"median_s": round(med[k], 4), "times_s": [round(t, 4) for t in times[k]]}  # noqa: E731
        timings = {k: summary(k) for k in calls if "/" not in k}
        timings["stages"] = {k: summary("stage/" + k) for k in stages}
        result["savedmodel"]["timings"] = timings
        gen_s = med["generator_signature"]
        result["savedmodel"]["overhead_ratio"] = round(med["serving_default_jpeg"] / gen_s, 2)
        print(
            f"SavedModel: serving_default({args.image[0]}x{args.image[1]} JPEG) {med['serving_default_jpeg']:.3f}s, "
            f"predict_ab {med['predict_ab_full_res']:.3f}s, generator({s}x{s}) {gen_s:.3f}s "
            f"-> overhead x{result['savedmodel']['overhead_ratio']}",
            flush=True,
        )
        print("  stages: " + ", ".join(f"{k} {med['stage/' + k]:.3f}s" for k in stages), flush=True)

        # 4. Accuracy of each TFLite variant against the Keras model.
        keras_fn = inference.keras_chroma_fn(generator)
        keras_chroma = []
        for _, photo_i in load_samples():
            grey, _ = colour.rgb_to_model(photo_i[np.newaxis])
            keras_chroma.append((grey, inference.colourise_grey(grey, keras_fn, spec)))
        result["tflite"] = {}
        for variant, path in paths.items():
            fn = tl.tflite_chroma_fn(path, num_threads=args.threads)
            de, de00 = [], []
            for grey, ref in keras_chroma:
                lab_v = colour.model_to_lab(grey, inference.colourise_grey(grey, fn, spec))
                lab_k = colour.model_to_lab(grey, ref)
                de.append(tf.norm(lab_v - lab_k, axis=-1).numpy().ravel())
                de00.append(deltaE_ciede2000(lab_k.numpy(), lab_v.numpy()).ravel())
            de, de00 = np.concatenate(de), np.concatenate(de00)
            entry = sidecar["variants"][variant]
            k = "tflite/" + variant
            result["tflite"][variant] = {
                "bytes": path.stat().st_size,
                **summary(k),
                "vs_savedmodel_generator": round(med[k] / gen_s, 3),
                "delta_e76_mean": round(float(de.mean()), 4),
                "delta_e76_p99": round(float(np.percentile(de, 99)), 4),
                "delta_e2000_mean": round(float(de00.mean()), 4),
                "delta_e2000_p99": round(float(np.percentile(de00, 99)), 4),
                "float_ops": entry["float_ops"],
                "ops": entry["ops"],
            }
            print(
                f"TFLite {variant:13s} {path.stat().st_size / 1e6:8.2f} MB  {med[k]:.3f}s "
                f"(x{med[k] / gen_s:.2f} of SavedModel G)  ΔE76 mean {de.mean():.3f} p99 "
                f"{np.percentile(de, 99):.3f}  CIEDE2000 mean {de00.mean():.3f} p99 {np.percentile(de00, 99):.3f}",
                flush=True,
            )
    result["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    result["wall_s"] = round(time.time() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
