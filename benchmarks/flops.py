"""FLOPs of one GAN training step per image: G forward, D forward per scale, the step.

    python benchmarks/flops.py                                   # gorriz-ibn-sn-md at 256x256
    python benchmarks/flops.py --layers                          # and every layer
    python benchmarks/flops.py --preset pix2pix --image-size 128 --json /tmp/flops.json

FLOPs are 2 x multiply-adds (MACs) at batch 1, so every figure is per image. Three
counts, from the preset's freshly built models (random weights, nothing is run but
one batch-1 inference pass of each network to read its layer shapes):

* **analytic**, per layer of the Keras models: a convolution costs
  ``H_out * W_out * k_h * k_w * C_in * C_out`` MACs, a transposed convolution
  ``H_in * W_in * k_h * k_w * C_in * C_out`` (every input position scatters one
  ``k x k x C_out`` patch), a Dense layer ``C_in * C_out`` per position. Ignored as
  negligible (listed in the JSON): normalisation layers, activations, dropout,
  padding, bias adds, concatenations, the discriminator's average-pool downsampling,
  and spectral norm's power iteration (matrix-vector products over the weights:
  per step, not per image);
* **graph**, as a cross-check of the forward passes: each network traced at batch 1
  (``training=False``) and frozen (variables -> constants); the same MAC count read
  from the ``Conv2D`` / ``Conv2DBackpropInput`` (transposed conv) / ``MatMul`` op
  shapes, and ``tf.compat.v1.profiler``'s ``float_operation()`` total, which also
  counts the element-wise ops it has statistics for (the difference to the analytic
  figure is what the analytic count ignores);
* **traced step**: the GAN step as ``colourise_tf/training/trainer.py`` builds it (G forward; D on the real
  and on the fake pair, each D output recorded once on both tapes; G's loss =
  adversarial + reconstruction, D's loss on real and fake; gradients of G's loss for
  G's weights and of D's loss for D's weights), traced as a ``tf.function`` at batch 1
  with the CPU-only kernels off (stock TensorFlow convolution ops), pruned to the ops
  the gradients need, and its convolution ops counted by pass: forward, input
  gradients (dX) and kernel gradients (dW).

Convention for the step (the "analytic step"): a backward pass through a convolution
costs one forward-sized convolution for dX and one for dW. A network whose weights a
loss updates therefore costs 2x its forward pass backward; the gradient of G's loss
passes through D on the fake path for dX only (D's weights are not updated by G's
loss), 1x. So, with G and D the forward passes (D: all scales, one input):

    step = G fwd + G bwd (2G) + D fwd real and fake (2D) + D bwd for D's loss,
           real and fake (4D) + D bwd for G's loss, fake, dX only (1D) = 3G + 7D

The traced step is slightly less (no dX of the first convolution where nothing
upstream needs it: G's input, and D's inputs in D's loss); counting every backward
as 2x forward, the G-loss pass through D included, gives 3G + 8D (also printed).
Batch-independent work per step (spectral norm's power iteration, the optimiser
update) is reported separately and not included in the per-image figures.

Prints a table and writes ``benchmarks/results/flops.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONV_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")


# ----------------------------------------------------------------------------- analytic


def _conv_macs(conv, in_shape, out_shape) -> int:
    """MACs of one Conv2D / Conv2DTranspose / Dense call (batch included)."""
    import keras

    c_in = int(in_shape[-1])
    if isinstance(conv, keras.layers.Dense):
        return math.prod(int(d) for d in in_shape[:-1]) * c_in * int(conv.units)
    kh, kw = (int(k) for k in conv.kernel_size)
    c_out = int(conv.filters)
    if isinstance(conv, keras.layers.Conv2DTranspose):
        positions = math.prod(int(d) for d in in_shape[:-1])
    else:
        positions = math.prod(int(d) for d in out_shape[:-1])
    return positions * kh * kw * c_in * c_out


def _counted_layer(layer):
    """The Conv2D / Conv2DTranspose / Dense a layer computes, or ``None``."""
    import keras

    from colourise_tf.layers import ConvBlock, SpectralNorm

    if isinstance(layer, ConvBlock):
        return layer.conv_layer
    if isinstance(layer, SpectralNorm):
        return layer.layer
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense)):
        return layer
    return None


def _ignored_parts(layer) -> list[str]:
    """Type names of the negligible parts of a counted layer (norm, activation...)."""
    from colourise_tf.layers import ConvBlock

    parts = []
    if isinstance(layer, ConvBlock):
        for sub in (layer.pad, layer.norm_layer, layer.dropout_layer, layer.act):
            if sub is not None:
                parts.append(type(sub).__name__)
        if layer.spectral_norm:
            parts.append("SpectralNorm power iteration")
        if layer.conv_layer.use_bias:
            parts.append("bias add")
    return parts


def walk(model, x, scope: str, rows: list, ignored: Counter) -> None:
    """Appends one row per counted layer of ``model`` called on the concrete ``x``.

    Layer shapes come from a probe model whose outputs are every layer's inputs and
    outputs, run once at batch 1; nested models are walked with their own input.
    """
    import keras
    import tree

    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    # The node of each layer in THIS graph (a nested model's .input/.output are its own).
    nodes = {id(n.operation): n for depth in model._nodes_by_depth.values() for n in depth}
    tensors, index = [], {}
    for layer in layers:
        node = nodes[id(layer)]
        for t in tree.flatten(node.input_tensors) + tree.flatten(node.output_tensors):
            if id(t) not in index:
                index[id(t)] = len(tensors)
                tensors.append(t)
    values = keras.Model(model.inputs, tensors)([x], training=False)
    for layer in layers:
        node = nodes[id(layer)]
        ins = [values[index[id(t)]] for t in tree.flatten(node.input_tensors)]
        outs = [values[index[id(t)]] for t in tree.flatten(node.output_tensors)]
        name = f"{scope}/{layer.name}"
        if isinstance(layer, keras.Model):
            walk(layer, ins[0], name, rows, ignored)
            continue
        conv = _counted_layer(layer)
        if conv is None:
            ignored[type(layer).__name__] += 1
            continue
        for part in _ignored_parts(layer):
            ignored[part] += 1
        in_shape, out_shape = tuple(ins[0].shape), tuple(outs[0].shape)
        macs = _conv_macs(conv, in_shape, out_shape)
        kernel = list(conv.kernel_size) if hasattr(conv, "kernel_size") else None
        rows.append(
            {
                "layer": name,
                "type": type(conv).__name__,
                "kernel": kernel,
                "strides": list(conv.strides) if hasattr(conv, "strides") else None,
                "input": list(in_shape[1:]),
                "output": list(out_shape[1:]),
                "macs": macs,
                "output_elements": math.prod(int(d) for d in out_shape[1:]),
                "gflop": 2 * macs / 1e9,
            }
        )


def analytic(model, input_shape: tuple[int, ...]) -> tuple[list[dict], Counter]:
    import numpy as np

    rows: list[dict] = []
    ignored: Counter = Counter()
    walk(model, np.zeros(input_shape, np.float32), model.name, rows, ignored)
    return rows, ignored


# ----------------------------------------------------------------------------- graph


def _op_macs(op) -> int:
    """MACs of a convolution / transposed convolution / gradient / MatMul op from its shapes."""
    if op.type == "Conv2D":
        kh, kw, ci, co = op.inputs[1].shape.as_list()
        return math.prod(op.outputs[0].shape.as_list()[:-1]) * kh * kw * ci * co
    if op.type == "Conv2DBackpropInput":  # dX of a conv, or a transposed conv
        kh, kw, ci, co = op.inputs[1].shape.as_list()
        return math.prod(op.inputs[2].shape.as_list()[:-1]) * kh * kw * ci * co
    if op.type == "Conv2DBackpropFilter":  # dW: every output position meets one patch
        kh, kw, ci, co = op.outputs[0].shape.as_list()
        return math.prod(op.inputs[2].shape.as_list()[:-1]) * kh * kw * ci * co
    if op.type == "MatMul":
        a, b = op.inputs[0].shape.as_list(), op.inputs[1].shape.as_list()
        m, k = (a[1], a[0]) if op.get_attr("transpose_a") else (a[0], a[1])
        n = b[0] if op.get_attr("transpose_b") else b[1]
        return m * k * n
    return 0


def frozen_forward(model, shape: tuple[int, ...]) -> dict:
    """Conv / MatMul MACs and the profiler total of the frozen batch-1 inference graph."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda x: model(x, training=False))
    graph = convert_variables_to_constants_v2(fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))).graph
    conv = sum(_op_macs(op) for op in graph.get_operations() if op.type in CONV_OPS)
    matmul = sum(_op_macs(op) for op in graph.get_operations() if op.type == "MatMul")
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    prof = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=opts)
    return {
        "conv_gflop": 2 * conv / 1e9,
        "matmul_gflop": 2 * matmul / 1e9,
        "profiler_total_gflop": int(prof.total_float_ops) / 1e9,
    }


def traced_step(cfg, generator, discriminator) -> dict:
    """Convolution FLOPs of the batch-1 GAN step graph, by network and pass."""
    import tensorflow as tf

    from colourise_tf import losses, models
    from colourise_tf.ops import cpu_kernels

    m, s = cfg.model, cfg.model.image_size
    c_g, c_d = models.generator_input_channels(m), models.discriminator_input_channels(m)
    g_adv, d_adv = losses.get_adversarial_losses(cfg.loss.adversarial)
    rec_weight = float(cfg.loss.reconstruction_weight)

    passes: dict[str, str] = {}

    @tf.function
    def step(g_in, chroma, d_side):
        grey = g_in[..., :1]
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            out = generator(g_in, training=True)
            fake = tf.cast(out[0] if isinstance(out, (list, tuple)) else out, tf.float32)[..., :2]
            real_in = tf.concat([grey, chroma, d_side], axis=-1)
            fake_in = tf.concat([grey, fake, d_side], axis=-1)
            d_real = discriminator(real_in, training=True)
            d_fake = discriminator(fake_in, training=True)
            g_loss = g_adv(d_fake) + rec_weight * losses.l1_loss(chroma, fake)
            d_loss = d_adv(d_real, d_fake)
        # The tapes name their ops "gradient_tape/..." whatever the scope: tell the two
        # backward passes apart by the ops each gradient call adds to the graph.
        graph = tf.compat.v1.get_default_graph()
        n0 = len(graph.get_operations())
        g_grads = g_tape.gradient(g_loss, generator.trainable_variables)
        n1 = len(graph.get_operations())
        d_grads = d_tape.gradient(d_loss, discriminator.trainable_variables)
        ops = graph.get_operations()
        passes.update({op.name: "g_loss_backward" for op in ops[n0:n1]})
        passes.update({op.name: "d_loss_backward" for op in ops[n1:]})
        return g_grads, d_grads

    with cpu_kernels("off"):
        concrete = step.get_concrete_function(
            tf.TensorSpec((1, s, s, c_g), tf.float32),
            tf.TensorSpec((1, s, s, 2), tf.float32),
            tf.TensorSpec((1, s, s, c_d - 3), tf.float32),
        )
    graph = concrete.graph
    graph_def = graph.as_graph_def()
    kept = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [t.op.name for t in concrete.outputs])
    keep = {n.name for n in kept.node}

    def network(name: str) -> str:
        parts = name.split("/")
        for model, key in ((generator, "G"), (discriminator, "D")):
            if any(p == model.name or p.startswith(model.name + "_") for p in parts):
                return key
        return "other"

    from tensorflow.python.framework import ops as tf_ops

    by_pass: Counter = Counter()
    matmul = registered = 0
    unknown: Counter = Counter()
    registry_by_type: Counter = Counter()
    for op in graph.get_operations():
        if op.name not in keep:
            continue
        try:  # what tf.compat.v1.profiler's float_operation() counts for this op
            flops = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value or 0
            registered += flops
            registry_by_type[op.type] += flops / 1e9
        except (ValueError, TypeError):  # a shape the registry cannot read
            unknown[op.type] += 1
        if op.type == "MatMul":
            matmul += _op_macs(op)
            continue
        if op.type not in CONV_OPS:
            continue
        where = passes.get(op.name, "forward")
        kind = "" if where == "forward" else ("_dW" if op.type == "Conv2DBackpropFilter" else "_dX")
        by_pass[f"{network(op.name)} {where}{kind}"] += 2 * _op_macs(op) / 1e9
    return {
        "gflop_per_image": sum(by_pass.values()),
        "by_network_and_pass_gflop": dict(sorted(by_pass.items())),
        "spectral_norm_matmul_gflop_per_step": 2 * matmul / 1e9,
        "profiler_registry_total_gflop": registered / 1e9,
        "profiler_registry_note": (
            "what tf.compat.v1.profiler float_operation() would count on the pruned step graph: its "
            "Conv2DBackpropInput / Conv2DBackpropFilter formulas take positions = input size / stride^2, which "
            "over-counts the gradients of the stride-1 VALID convs (PatchGAN layer4 and output conv, input "
            "padded to n+2, output n-1) by (input/output)^2; it has no statistics for many element-wise ops "
            "(FusedBatchNormV3, Relu, Tanh, Softplus...), so its element-wise part is a lower bound"
        ),
        "profiler_registry_elementwise_gflop": (registered / 1e9)
        - sum(registry_by_type[t] for t in (*CONV_OPS, "MatMul")),
        "profiler_registry_by_op_type_gflop": {k: v for k, v in registry_by_type.most_common() if v >= 1e-3},
        "profiler_registry_unreadable_ops": dict(unknown),
        "ops_total": len(graph_def.node),
        "ops_needed": len(keep),
    }


# ----------------------------------------------------------------------------- main


def _total(rows: list[dict]) -> float:
    return sum(r["gflop"] for r in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gorriz-ibn-sn-md")
    p.add_argument("--image-size", type=int, default=None, help="default: the preset's model.image_size")
    p.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "flops.json"))
    p.add_argument(
        "--reference",
        type=float,
        default=None,
        help="a step figure (GFLOP per image) to compare with (default: the ~93 quoted for "
        "gorriz-ibn-sn-md at 256x256, for that setting only)",
    )
    p.add_argument("--layers", action="store_true", help="also print every counted layer")
    p.add_argument("--no-trace", action="store_true", help="skip the traced-step count")
    args = p.parse_args()

    import keras
    import tensorflow as tf

    from colourise_tf import config as config_lib
    from colourise_tf import models
    from colourise_tf.cpu import cpu_summary

    tf.get_logger().setLevel("ERROR")  # the TF1 graph utilities' deprecation notices
    started = time.time()
    cfg = config_lib.get_preset(args.preset)
    if args.image_size:
        cfg = config_lib.apply_overrides(cfg, [f"model.image_size={args.image_size}"])
    m = cfg.model
    s = int(m.image_size)
    if args.reference is None and args.preset == "gorriz-ibn-sn-md" and s == 256:
        args.reference = 93.0
    keras.utils.set_random_seed(0)
    generator, discriminator = models.build_models(cfg)
    g_shape = (1, s, s, models.generator_input_channels(m))
    d_shape = (1, s, s, models.discriminator_input_channels(m))

    g_rows, ignored = analytic(generator, g_shape)
    g = _total(g_rows)
    g_graph = frozen_forward(generator, g_shape)
    result: dict = {
        "preset": args.preset,
        "image_size": s,
        "batch": 1,
        "flop_definition": "2 x multiply-adds of Conv2D / Conv2DTranspose / Dense layers (MACs from kernel "
        "size, channels and output positions; transposed convs: input positions)",
        "generator": {"params": int(generator.count_params()), "forward_gflop": g, "layers": g_rows},
        "cross_check_forward": {
            "generator": {
                "analytic_gflop": g,
                **g_graph,
                "profiler_over_analytic": g_graph["profiler_total_gflop"] / g - 1,
            },
        },
    }

    d, d_graph = 0.0, None
    if discriminator is not None:
        d_rows, d_ignored = analytic(discriminator, d_shape)
        ignored.update(d_ignored)
        d = _total(d_rows)
        scales = []
        for sub in (l for l in discriminator.layers if isinstance(l, keras.Model)):
            rows = [r for r in d_rows if r["layer"].startswith(f"{discriminator.name}/{sub.name}/")]
            first = rows[0]["input"] if rows else None
            scales.append({"name": sub.name, "input": first, "forward_gflop": _total(rows)})
        d_graph = frozen_forward(discriminator, d_shape)
        result["discriminator"] = {
            "params": int(discriminator.count_params()),
            "num_scales": int(m.num_scales),
            "forward_gflop": d,
            "scales": scales,
            "layers": d_rows,
        }
        result["cross_check_forward"]["discriminator"] = {
            "analytic_gflop": d,
            **d_graph,
            "profiler_over_analytic": d_graph["profiler_total_gflop"] / d - 1,
        }
    result["ignored_layer_types"] = dict(sorted(ignored.items()))
    # What the ignored layers touch: every counted layer's output passes through its
    # bias / norm / activation once per forward pass (a few FLOPs per element each).
    elements = sum(r["output_elements"] for r in g_rows) + (
        sum(r["output_elements"] for r in result["discriminator"]["layers"]) if discriminator is not None else 0
    )
    result["ignored_estimate"] = {
        "conv_output_elements_g_plus_d_forward": elements,
        "gflop_at_10_flops_per_element": 10 * elements / 1e9,
        "share_of_g_plus_d_forward": 10 * elements / 1e9 / (g + d),
    }

    terms = {
        "G forward": (1, 0),
        "G backward (dX + dW)": (2, 0),
        "D forward, real and fake": (0, 2),
        "D backward for D's loss, real and fake (dX + dW)": (0, 4),
        "D backward for G's loss, fake (dX only)": (0, 1),
    }
    if discriminator is None:
        terms = {k: v for k, v in terms.items() if v[1] == 0}
    step = {k: a * g + b * d for k, (a, b) in terms.items()}
    step_total = sum(step.values())
    result["step"] = {
        "convention": (
            "a backward pass through a conv costs one forward-sized conv for dX and one for dW; so the "
            "backward of a network whose weights the loss updates costs 2x its forward (G for G's loss, D for "
            "D's loss on real and on fake), the gradient of G's loss through D on the fake path 1x (dX only): "
            "step = 3 G + 7 D, G and D the forward passes (D over all scales, one input)"
        ),
        "terms_gflop": step,
        "gflop_per_image": step_total,
        "all_backward_2x_gflop_per_image": 3 * g + (8 * d if discriminator is not None else 0),
        "profiler_forward_3g_7d_gflop": 3 * g_graph["profiler_total_gflop"]
        + (7 * d_graph["profiler_total_gflop"] if discriminator is not None else 0),
        "reference_gflop_per_image": args.reference,
        "ratio_to_reference": step_total / args.reference if args.reference else None,
    }
    if cfg.loss.feature_weight > 0:
        result["step"]["not_counted"] = (
            f"feature loss backbone {cfg.loss.feature_backbone}:{cfg.loss.feature_layer} (forward on real and "
            "fake, dX on fake)"
        )
    if not args.no_trace and discriminator is not None:
        result["traced_step"] = traced_step(cfg, generator, discriminator)
    params = int(generator.count_params()) + (int(discriminator.count_params()) if discriminator is not None else 0)
    result["per_step_not_per_image"] = {
        "spectral_norm_matmul_gflop": result.get("traced_step", {}).get("spectral_norm_matmul_gflop_per_step"),
        "optimiser_update": (
            f"O(parameters): {params:,d} parameters, ~10-15 FLOPs each for Adam, ~{params * 12 / 1e9:.1f} GFLOP"
        ),
    }
    result.update(
        {
            "cpu": cpu_summary(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "seconds": round(time.time() - started, 1),
        }
    )

    # ------------------------------------------------------------------ table
    print(f"{args.preset} at {s}x{s}, GFLOP per image (FLOP = 2 x multiply-add of conv / transposed conv / dense)")
    line = "{:<64s}{:>10s}"
    print(line.format("", "GFLOP"))
    print(line.format("G forward", f"{g:.3f}"))
    if discriminator is not None:
        for sc in result["discriminator"]["scales"]:
            size = "x".join(str(v) for v in sc["input"][:2]) if sc["input"] else "?"
            print(line.format(f"D forward, {sc['name']} ({size} input)", f"{sc['forward_gflop']:.3f}"))
        print(line.format(f"D forward, all {len(result['discriminator']['scales'])} scales", f"{d:.3f}"))
    print("step:")
    for k, v in step.items():
        print(line.format(f"  {k}", f"{v:.3f}"))
    formula = "3 G + 7 D" if discriminator is not None else "3 G"
    print(line.format(f"step per image ({formula})", f"{step_total:.2f}"))
    if "traced_step" in result:
        ts = result["traced_step"]
        print(line.format("traced step per image (conv ops the gradients need)", f"{ts['gflop_per_image']:.2f}"))
        for k, v in ts["by_network_and_pass_gflop"].items():
            print(line.format(f"  {k}", f"{v:.3f}"))
        print(
            line.format(
                "  the profiler's formulas on that graph (over-count; JSON note)",
                f"{ts['profiler_registry_total_gflop']:.2f}",
            )
        )
    if discriminator is not None:
        st = result["step"]
        print(line.format("3 G + 7 D from the profiler's forward totals", f"{st['profiler_forward_3g_7d_gflop']:.2f}"))
        print(line.format("every backward 2x forward (3 G + 8 D)", f"{st['all_backward_2x_gflop_per_image']:.2f}"))
    if args.reference:
        print(
            f"reference {args.reference:g} GFLOP per image: the step count is "
            f"x{result['step']['ratio_to_reference']:.3f} of it"
        )
    for net, cc in result["cross_check_forward"].items():
        print(
            f"cross-check {net} forward: analytic {cc['analytic_gflop']:.3f}, frozen-graph conv ops "
            f"{cc['conv_gflop']:.3f} (+ MatMul {cc['matmul_gflop']:.3f}), profiler total "
            f"{cc['profiler_total_gflop']:.3f} ({100 * cc['profiler_over_analytic']:+.1f}% over analytic)"
        )
    per_step = result["per_step_not_per_image"]
    if per_step["spectral_norm_matmul_gflop"] is not None:
        print(
            f"per step, not per image: spectral-norm matmuls {per_step['spectral_norm_matmul_gflop']:.3f} GFLOP; "
            f"optimiser {per_step['optimiser_update']}"
        )
    print("ignored as negligible: " + ", ".join(f"{k} x{v}" for k, v in result["ignored_layer_types"].items()))
    est = result["ignored_estimate"]
    print(
        f"  they touch {est['conv_output_elements_g_plus_d_forward'] / 1e6:.1f} M elements per G + D forward: "
        f"~{est['gflop_at_10_flops_per_element']:.2f} GFLOP at 10 FLOPs each "
        f"({100 * est['share_of_g_plus_d_forward']:.1f}% of G + D forward)"
    )
    if args.layers:
        for r in g_rows + (result["discriminator"]["layers"] if discriminator is not None else []):
            print(
                f"  {r['layer']:<44s} {r['type']:<16s} {str(r['input']):>18s} -> {str(r['output']):<18s}"
                f" {r['gflop']:8.4f}"
            )

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
