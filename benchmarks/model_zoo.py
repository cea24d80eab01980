"""Model zoo: parameters and forward GFLOPs of every preset at its native resolution.

    python benchmarks/model_zoo.py [--presets a,b] [--out benchmarks/results/model_zoo.json]

For each preset, G and D are built from the registry and each traced once at batch 1
and the preset's ``image_size`` (inference mode). The concrete function is frozen
(variables -> constants) and its graph measured twice:

* ``*_gflops``: ``tf.compat.v1.profiler`` ``float_operation()`` total (every op with
  registered flop statistics: convs, transposed convs, matmuls, adds, muls... the
  profiler counts 2 FLOPs per multiply-accumulate);
* ``*_conv_gflops``: 2 x the multiply-accumulates of the Conv2D,
  Conv2DBackpropInput (transposed conv) and MatMul ops only, read from the graph's
  op shapes - the usual "model FLOPs" figure.

The discriminator figure covers all its scales for one (real or fake) input. The
feature-loss backbones of the ``tarres-*`` presets are not part of G or D; they are
listed separately (truncated at the loss layer, ``weights=None`` so nothing is
downloaded, same resolution).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework.convert_to_constants import (  # noqa: E402
    convert_variables_to_constants_v2,
)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from colourise_tf import config as C  # noqa: E402
from colourise_tf import models  # noqa: E402


def _frozen_graph(model: keras.Model, shape: tuple[int, ...]) -> tf.Graph:
    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))
    return convert_variables_to_constants_v2(concrete).graph


def _profiler_flops(graph: tf.Graph) -> int:
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=opts)
    return int(info.total_float_ops)


def _conv_macs(graph: tf.Graph) -> int:
    macs = 0
    for op in graph.get_operations():
        if op.type == "Conv2D":
            out = op.outputs[0].shape.as_list()
            kh, kw, cin, _ = op.inputs[1].shape.as_list()
            macs += int(np.prod(out)) * kh * kw * cin
        elif op.type == "Conv2DBackpropInput":  # transposed conv: every input pixel scatters k*k*c_out
            kh, kw, cout, cin = op.inputs[1].shape.as_list()
            inp = op.inputs[2].shape.as_list()
            macs += int(np.prod(inp[:-1])) * kh * kw * cout * cin
        elif op.type == "MatMul":
            a, b = op.inputs[0].shape.as_list(), op.inputs[1].shape.as_list()
            ta, tb = op.get_attr("transpose_a"), op.get_attr("transpose_b")
            m = a[1] if ta else a[0]
            k = a[0] if ta else a[1]
            n = b[0] if tb else b[1]
            macs += m * k * n
    return macs


def measure(model: keras.Model, shape: tuple[int, ...]) -> dict:
    graph = _frozen_graph(model, shape)
    return {
        "gflops": _profiler_flops(graph) / 1e9,
        "conv_gflops": 2 * _conv_macs(graph) / 1e9,
    }


def _backbone(backbone: str, layer: str, size: int) -> keras.Model:
    if backbone == "vgg16":
        net = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    else:
        net = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(size, size, 3))
    return keras.Model(net.input, net.get_layer(layer).output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent / "results" / "model_zoo.json"))
    args = parser.parse_args(argv)
    names = [n for n in args.presets.split(",") if n] or C.list_presets()

    rows, backbones = [], {}
    for name in names:
        t0 = time.time()
        cfg = C.get_preset(name)
        m = cfg.model
        g, d = models.build_models(cfg)
        s = m.image_size
        row = {
            "preset": name,
            "generator": m.generator.kind,
            "discriminator": m.discriminator.kind,
            "image_size": s,
            "colour_space": m.colour_space,
            "num_scales": m.num_scales,
            "g_params": int(g.count_params()),
            "d_params": int(d.count_params()) if d is not None else 0,
        }
        gm = measure(g, (1, s, s, models.generator_input_channels(m)))
        row["g_gflops"], row["g_conv_gflops"] = gm["gflops"], gm["conv_gflops"]
        if d is not None:
            dm = measure(d, (1, s, s, models.discriminator_input_channels(m)))
            row["d_gflops"], row["d_conv_gflops"] = dm["gflops"], dm["conv_gflops"]
        else:
            row["d_gflops"] = row["d_conv_gflops"] = 0.0
        if cfg.loss.feature_weight > 0:
            key = f"{cfg.loss.feature_backbone}:{cfg.loss.feature_layer}@{s}"
            if key not in backbones:
                net = _backbone(cfg.loss.feature_backbone, cfg.loss.feature_layer, s)
                bm = measure(net, (1, s, s, 3))
                backbones[key] = {"params": int(net.count_params()), **bm}
                del net
            row["feature_backbone"] = key
        row["seconds"] = round(time.time() - t0, 1)
        rows.append(row)
        print(
            f"{name:20s} {s:4d} G {row['g_params']:>11,d} {row['g_gflops']:9.4f} GF ({row['g_conv_gflops']:9.4f})"
            f"  D {row['d_params']:>10,d} {row['d_gflops']:8.4f} GF ({row['d_conv_gflops']:8.4f})",
            flush=True,
        )
        del g, d
        keras.backend.clear_session()
    for key, b in backbones.items():
        print(f"feature backbone {key}: {b['params']:,d} params, {b['gflops']:.2f} GF ({b['conv_gflops']:.2f})")

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "batch": 1,
        "method": (
            "frozen concrete function (training=False) per model; gflops = tf.compat.v1.profiler "
            "float_operation total; conv_gflops = 2 * MACs of Conv2D / Conv2DBackpropInput / MatMul ops "
            "from the graph's shapes"
        ),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "presets": rows,
        "feature_backbones": backbones,
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
