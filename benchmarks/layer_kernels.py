"""Forward+backward time of the layer fast paths against the plain TF/Keras way.

1. IBN (gorriz U-Net / PatchGAN shapes): ``IBNorm`` (one pass, hand-written
   backward) against slicing the channels into Keras ``GroupNormalization`` and
   ``BatchNormalization`` and concatenating (what IBN costs without it); and
   ``InstanceNormalization`` against ``keras.layers.GroupNormalization(groups=-1)``.
2. Kernel gradients of the U-Net and PatchGAN convs: oneDNN's
   ``Conv2DBackpropFilter`` against one GEMM over patches
   (``colourise_tf.ops.filter_grad._patches_matmul``) and against GEMMs over shifted views
   (``_shifted_matmul``), and which one ``colourise_tf.ops.conv2d`` picks
   (``patch_filter_gradient_wanted``, then ``shifted_filter_gradient_wanted``).
3. Stride-1 convs, forward and both gradients, float32 (``--only winograd``):
   ``tf.nn.conv2d`` on the padded input against ``colourise_tf.ops.winograd.winograd_conv2d``
   and, for convs to at most 4 channels, ``colourise_tf.ops.thin_conv.thin_output_conv2d``
   (also in bfloat16), and which one ``conv_forward`` takes in training
   (``winograd_wanted``, ``thin_output_wanted``); and the U-Net's 128->2 transposed
   chroma conv, direct against ``thin_output_conv2d_transpose``.
4. Few-position convs and transposed convs, forward and both gradients, float32
   (``--only gemm``): the U-Net's deep layers at 256x256 and 128x128 and the
   PatchGAN's stride-1 layer at its small scales, TF's ops as ``conv_forward`` used
   them before (oneDNN, with the GEMM kernel gradient where ``filter_grad_fn`` says)
   against ``colourise_tf.ops.gemm_conv``, and whether ``gemm_conv_wanted`` takes it.

Medians of interleaved repeats, float32 and bfloat16, batch 4; prints a table and
writes JSON. ``--intra-op-threads 1`` measures the way training runs on a 2-core CPU
(one thread per op, two ops at a time; ``colourise_tf/training/runtime.py``).

    python benchmarks/layer_kernels.py [--repeats 9] [--only ibn filter_gradient winograd gemm]
        [--intra-op-threads N] [--out benchmarks/results/layer_kernels.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from colourise_tf import layers as L
from colourise_tf.cpu import cpu_summary
from colourise_tf.ops import conv as C
from colourise_tf.ops import filter_grad as FG
from colourise_tf.ops import gemm_conv as G
from colourise_tf.ops import thin_conv as TC
from colourise_tf.ops import winograd as W

REPO = Path(__file__).resolve().parents[1]
BATCH = 4
SECTIONS = ("ibn", "filter_gradient", "winograd", "gemm")


def _median_ms(fns: dict, repeats: int) -> dict:
    for f in fns.values():
        f()  # trace / warm up
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def _ibn_case(shape, dtype, repeats):
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if dtype == tf.bfloat16 else "float32")
    rng = np.random.default_rng(0)
    x = tf.cast(tf.constant(rng.normal(1.0, 2.0, shape).astype(np.float32)), dtype)
    w = tf.cast(tf.constant(rng.normal(size=shape).astype(np.float32)), dtype)
    ours = L.IBNorm()
    ours.build(shape)
    k = ours.n_instance
    inn = keras.layers.GroupNormalization(groups=-1)
    bn = keras.layers.BatchNormalization()
    inn.build(shape[:-1] + (k,))
    bn.build(shape[:-1] + (shape[-1] - k,))

    def sliced(x):
        return tf.concat([tf.cast(inn(x[..., :k]), x.dtype), tf.cast(bn(x[..., k:], training=True), x.dtype)], -1)

    def step_fn(f, variables):
        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.cast(f(x), tf.float32) * tf.cast(w, tf.float32))
            return tape.gradient(loss, [x] + variables)

        return lambda: [g.numpy() for g in step(x)]

    gn = keras.layers.GroupNormalization(groups=-1)
    inorm = L.InstanceNormalization()
    gn.build(shape)
    inorm.build(shape)
    res = _median_ms(
        {
            "keras_sliced": step_fn(sliced, [inn.gamma, inn.beta, bn.gamma, bn.beta]),
            "ibnorm": step_fn(lambda x: ours(x, training=True), ours.trainable_variables),
            "keras_group_norm": step_fn(gn, gn.trainable_variables),
            "instance_norm": step_fn(lambda x: inorm(x, training=True), inorm.trainable_variables),
        },
        repeats,
    )
    keras.mixed_precision.set_global_policy("float32")
    return res


def _filter_grad_case(kind, n, cin, cout, dtype, repeats, stride=2):
    rng = np.random.default_rng(0)
    strides, padding = (stride, stride), "SAME" if stride == 2 else "VALID"
    if kind == "conv":  # 4x4 conv: stride 2 "same" x [B, n, n, cin] -> [B, n/2, n/2, cout]; stride 1 "valid" -> n-3
        on = n // 2 if stride == 2 else n - 3
        src = tf.cast(rng.normal(size=(BATCH, n, n, cin)).astype(np.float32), dtype)
        other = tf.cast(rng.normal(size=(BATCH, on, on, cout)).astype(np.float32), dtype)
        kshape, rows = [4, 4, cin, cout], BATCH * on * on
    else:  # transposed: x [B, n, n, cin] -> [B, 2n, 2n, cout]; its kernel is [4, 4, cout, cin]
        src = tf.cast(rng.normal(size=(BATCH, 2 * n, 2 * n, cout)).astype(np.float32), dtype)
        other = tf.cast(rng.normal(size=(BATCH, n, n, cin)).astype(np.float32), dtype)
        kshape, rows = [4, 4, cout, cin], BATCH * n * n
    native = tf.function(
        lambda: tf.raw_ops.Conv2DBackpropFilter(
            input=src, filter_sizes=kshape, out_backprop=other, strides=[1, *strides, 1], padding=padding
        )
    )
    gemm = tf.function(lambda: FG._patches_matmul(src, other, kshape, strides, padding))
    shifted = tf.function(lambda: FG._shifted_matmul(src, other, kshape, strides, padding))
    a = native().numpy().astype(np.float32)
    rel = {
        name: float(np.abs(a - f().numpy().astype(np.float32)).max() / np.abs(a).max())
        for name, f in (("patches_gemm", gemm), ("shifted_gemm", shifted))
    }
    res = _median_ms(
        {
            "native": lambda: native().numpy(),
            "patches_gemm": lambda: gemm().numpy(),
            "shifted_gemm": lambda: shifted().numpy(),
        },
        repeats,
    )
    chosen = FG.filter_grad_fn(rows, kshape, strides, dtype)
    res.update(
        rows=rows,
        kernel_elements=int(np.prod(kshape)),
        stride=stride,
        max_rel_diff=rel,
        chosen={None: "native", FG._patches_matmul: "patches_gemm", FG._shifted_matmul: "shifted_gemm"}[chosen],
    )
    return res


def _fwd_bwd(f, x, k, dy):
    """A callable running ``f(x, k)`` and both its gradients for ``dy`` (one tf.function)."""

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch([x, k])
            y = f(x, k)
        return [y] + tape.gradient(y, [x, k], output_gradients=dy)

    return lambda: [t.numpy().astype(np.float32) for t in step()]


def _max_rel_diff(ref, got) -> float:
    return max(float(np.abs(a - b).max() / np.abs(a).max()) for a, b in zip(ref, got))


def _stride1_case(n, r, cin, cout, pad, repeats, dtype=tf.float32):
    """fwd + input and kernel gradients of a stride-1 ``r x r`` conv, ``pad`` zeros per side."""
    rng = np.random.default_rng(0)
    x = tf.cast(rng.normal(size=(BATCH, n, n, cin)).astype(np.float32), dtype)
    k = tf.cast((rng.normal(size=(r, r, cin, cout)) * 0.05).astype(np.float32), dtype)
    on = n + 2 * pad - r + 1
    dy = tf.cast(rng.normal(size=(BATCH, on, on, cout)).astype(np.float32), dtype)
    pads = ((pad, pad), (pad, pad))

    def padded(x):
        return tf.pad(x, [[0, 0], *pads, [0, 0]])

    fns = {"direct": _fwd_bwd(lambda x, k: tf.nn.conv2d(padded(x), k, 1, "VALID"), x, k, dy)}
    if dtype == tf.float32:
        fns["winograd"] = _fwd_bwd(lambda x, k: W.winograd_conv2d(x, k, pads), x, k, dy)
    if cout <= TC.MAX_OUTPUT_CHANNELS:
        fns["thin"] = _fwd_bwd(lambda x, k: TC.thin_output_conv2d(padded(x), k, "VALID"), x, k, dy)
    ref = fns["direct"]()
    rel = {name: _max_rel_diff(ref, f()) for name, f in fns.items() if name != "direct"}
    res = _median_ms(fns, repeats)
    chosen = "direct"
    if W.winograd_wanted([r, r, cin, cout], (1, 1), (on, on), dtype, training=True):
        chosen = "winograd"
    elif TC.thin_output_wanted([r, r, cin, cout], (1, 1), dtype, training=True):
        chosen = "thin"
    res.update(max_rel_diff=rel, chosen=chosen)
    return res


def _thin_transpose_case(n, cin, cout, repeats, dtype):
    """fwd + both gradients of a 4x4 stride-2 "same" transposed conv, direct vs thin_conv."""
    rng = np.random.default_rng(0)
    x = tf.cast(rng.normal(size=(BATCH, n, n, cin)).astype(np.float32), dtype)
    k = tf.cast((rng.normal(size=(4, 4, cout, cin)) * 0.05).astype(np.float32), dtype)
    out_shape = [BATCH, 2 * n, 2 * n, cout]
    dy = tf.cast(rng.normal(size=out_shape).astype(np.float32), dtype)

    fns = {
        "direct": _fwd_bwd(lambda x, k: tf.nn.conv2d_transpose(x, k, out_shape, 2, "SAME"), x, k, dy),
        "thin": _fwd_bwd(lambda x, k: TC.thin_output_conv2d_transpose(x, k, out_shape, (2, 2), "SAME"), x, k, dy),
    }
    ref, got = fns["direct"](), fns["thin"]()
    res = _median_ms(fns, repeats)
    res.update(
        max_rel_diff={"thin": _max_rel_diff(ref, got)},
        chosen="thin" if TC.thin_output_transpose_wanted([4, 4, cout, cin], dtype, training=True) else "direct",
    )
    return res


def _gemm_case(kind, n, cin, cout, stride, pad, repeats):
    """fwd + both gradients of a 4x4 conv (``pad`` zeros per side, VALID) or "same"
    transposed conv, float32: the pre-existing TF path against :mod:`gemm_conv`."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(BATCH, n, n, cin)).astype(np.float32))
    if kind == "convT":
        k = tf.constant((rng.normal(size=(4, 4, cout, cin)) * 0.05).astype(np.float32))
        out_shape = [BATCH, n * stride, n * stride, cout]
        rows = BATCH * n * n
        fg = FG.filter_grad_fn(rows, k.shape, (stride, stride), tf.float32)
        if fg is None:

            def tf_path(x, k):
                return tf.nn.conv2d_transpose(x, k, out_shape, stride, "SAME")
        else:

            def tf_path(x, k):
                return FG.conv2d_transpose_custom_grad(x, k, out_shape, (stride, stride), "SAME", fg)

        def gemm(x, k):
            return G.gemm_conv2d_transpose(x, k, out_shape, (stride, stride), "SAME")
    else:
        k = tf.constant((rng.normal(size=(4, 4, cin, cout)) * 0.05).astype(np.float32))
        on = (n + 2 * pad - 4) // stride + 1
        rows = BATCH * on * on
        fg = FG.filter_grad_fn(rows, k.shape, (stride, stride), tf.float32)

        def padded(x):
            return tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])

        if fg is None:

            def tf_path(x, k):
                return tf.nn.conv2d(padded(x), k, stride, "VALID")
        else:

            def tf_path(x, k):
                return FG.conv2d_custom_grad(padded(x), k, (stride, stride), "VALID", fg)

        def gemm(x, k):
            return G.gemm_conv2d(x, k, (stride, stride), ((pad, pad), (pad, pad)))

    y = tf_path(x, k)
    dy = tf.constant(rng.normal(size=y.shape).astype(np.float32))
    fns = {"tf": _fwd_bwd(tf_path, x, k, dy), "gemm": _fwd_bwd(gemm, x, k, dy)}
    rel = _max_rel_diff(fns["tf"](), fns["gemm"]())
    res = _median_ms(fns, repeats)
    res.update(rows=rows, max_rel_diff=rel, chosen=_gemm_chosen(kind, n, k.shape, stride, pad, rows))
    return res


def _gemm_chosen(kind, n, kernel_shape, stride, pad, rows) -> str:
    """The path ``colourise_tf.ops.conv2d`` takes in float32 training: gemm, winograd or tf
    (for a conv, through its own ``_gemm_pads`` / ``_winograd_pads``)."""
    if kind == "convT":
        return "gemm" if G.gemm_conv_wanted(rows, kernel_shape, (stride, stride), tf.float32, True) else "tf"
    layer = keras.layers.Conv2D(int(kernel_shape[3]), int(kernel_shape[0]), stride, padding="valid", use_bias=False)
    layer.build((None, None, None, int(kernel_shape[2])))
    x = tf.zeros([BATCH, n, n, int(kernel_shape[2])])
    if C._gemm_pads(x, layer.kernel, (stride, stride), "VALID", pad) is not None:
        return "gemm"
    return "winograd" if C._winograd_pads(x, layer.kernel, (stride, stride), "VALID", pad) is not None else "tf"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "layer_kernels.json"))
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=SECTIONS)
    p.add_argument("--intra-op-threads", type=int, default=0, help="0: TensorFlow's default pools")
    args = p.parse_args()
    if args.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    out = {
        "batch": BATCH,
        "intra_op_threads": args.intra_op_threads or "tf default",
        "cpu": cpu_summary(),
        **{section: [] for section in SECTIONS},
    }
    ibn_shapes = {
        "unet dec6 (128x128x64)": (BATCH, 128, 128, 64),
        "unet enc2 (64x64x128)": (BATCH, 64, 64, 128),
        "unet dec3 (16x16x512)": (BATCH, 16, 16, 512),
    }
    for dtype in (tf.float32, tf.bfloat16) if "ibn" in args.only else ():
        for name, shape in ibn_shapes.items():
            r = _ibn_case(shape, dtype, args.repeats)
            out["ibn"].append({"layer": name, "dtype": dtype.name, **r})
            print(
                f"IBN {name:24s} {dtype.name:8s} keras sliced {r['keras_sliced']:7.2f} ms"
                f"   IBNorm {r['ibnorm']:7.2f} ms   x{r['keras_sliced'] / r['ibnorm']:.2f}"
                f"   |   IN: keras GroupNorm {r['keras_group_norm']:7.2f} ms"
                f"   InstanceNormalization {r['instance_norm']:7.2f} ms"
                f"   x{r['keras_group_norm'] / r['instance_norm']:.2f}",
                flush=True,
            )
    # (name, kind, input size, C_in, C_out, stride): the 256x256 gorriz U-Net's layers by their names in
    # generators.py (7 levels; decoder inputs include the skip), and the PatchGAN's stride-1 layer at two scales.
    convs = [
        ("enc2", "conv", 128, 64, 128, 2),
        ("enc3", "conv", 64, 128, 256, 2),
        ("enc4", "conv", 32, 256, 512, 2),
        ("enc5", "conv", 16, 512, 512, 2),
        ("enc6", "conv", 8, 512, 512, 2),
        ("enc7", "conv", 4, 512, 512, 2),
        ("dec1", "convT", 2, 512, 512, 2),
        ("dec2", "convT", 4, 1024, 512, 2),
        ("dec3", "convT", 8, 1024, 512, 2),
        ("dec4", "convT", 16, 1024, 256, 2),
        ("dec5", "convT", 32, 512, 128, 2),
        ("dec6", "convT", 64, 256, 64, 2),
        ("D layer4 x1", "conv", 34, 256, 512, 1),
        ("D layer4 x2", "conv", 18, 256, 512, 1),
    ]
    for dtype in (tf.float32, tf.bfloat16) if "filter_gradient" in args.only else ():
        for name, kind, n, cin, cout, stride in convs:
            r = _filter_grad_case(kind, n, cin, cout, dtype, args.repeats, stride)
            out["filter_gradient"].append({"layer": name, "dtype": dtype.name, **r})
            print(
                f"dW  {name:11s} rows {r['rows']:5d} {dtype.name:8s} oneDNN {r['native']:7.2f} ms   patches GEMM "
                f"{r['patches_gemm']:7.2f} ms   shifted GEMMs {r['shifted_gemm']:7.2f} ms   chosen: {r['chosen']:12s} "
                f"(max rel diff {max(r['max_rel_diff'].values()):.1e})",
                flush=True,
            )
    # (name, input size, kernel, C_in, C_out, pad): the PatchGAN's stride-1 layer at its three scales,
    # a ResNet-generator block, and shapes around the rule's edges.
    stride1 = [
        ("D layer4 x1", 32, 4, 256, 512, 1),
        ("D layer4 x2", 16, 4, 256, 512, 1),
        ("D layer4 x4", 8, 4, 256, 512, 1),
        ("D layer5 x1", 31, 4, 512, 1, 1),
        ("D layer5 x2", 15, 4, 512, 1, 1),
        ("D layer5 x4", 7, 4, 512, 1, 1),
        ("resnet block", 64, 3, 256, 256, 1),
        ("4x4 128->256", 32, 4, 128, 256, 1),
        ("4x4 64->128", 64, 4, 64, 128, 1),
        ("3x3 64->64", 128, 3, 64, 64, 1),
    ]
    cases = [(name, n, r, cin, cout, pad, tf.float32) for name, n, r, cin, cout, pad in stride1]
    cases += [(name, n, r, cin, cout, pad, tf.bfloat16) for name, n, r, cin, cout, pad in stride1 if cout == 1]
    for name, n, r, cin, cout, pad, dtype in cases if "winograd" in args.only else ():
        res = _stride1_case(n, r, cin, cout, pad, args.repeats, dtype)
        out["winograd"].append(
            {"layer": name, "dtype": dtype.name, "input": n, "kernel": r, "c_in": cin, "c_out": cout, **res}
        )
        fast = " ".join(
            f"  {k} {res[k]:7.2f} ms x{res['direct'] / res[k]:.2f}" for k in ("winograd", "thin") if k in res
        )
        print(
            f"s1  {name:13s} {n:3d}x{n:<3d} {r}x{r} {cin:3d}->{cout:<3d} {dtype.name:8s} fwd+bwd: direct "
            f"{res['direct']:7.2f} ms{fast}   chosen: {res['chosen']:8s}"
            f" (max rel diff {max(res['max_rel_diff'].values()):.1e})",
            flush=True,
        )
    for dtype in (tf.float32, tf.bfloat16) if "winograd" in args.only else ():
        res = _thin_transpose_case(128, 128, 2, args.repeats, dtype)
        out["winograd"].append(
            {
                "layer": "unet chroma (transposed)",
                "dtype": dtype.name,
                "input": 128,
                "kernel": 4,
                "c_in": 128,
                "c_out": 2,
                "stride": 2,
                **res,
            }
        )
        print(
            f"T   unet chroma   128x128 4x4 128->2   {dtype.name:8s} fwd+bwd: direct {res['direct']:7.2f} ms  thin "
            f"{res['thin']:7.2f} ms x{res['direct'] / res['thin']:.2f}   chosen: {res['chosen']:8s}"
            f" (max rel diff {res['max_rel_diff']['thin']:.1e})",
            flush=True,
        )
    # (name, kind, input size, C_in, C_out, stride, pad): U-Net layers at 256x256 and 128x128 images (rows =
    # batch x positions on the small side), the PatchGAN's stride-1 256->512 layer at its smaller scales.
    gemm_cases = [
        ("enc3 @256", "conv", 64, 128, 256, 2, 1),
        ("enc4 @256", "conv", 32, 256, 512, 2, 1),
        ("enc5 @256", "conv", 16, 512, 512, 2, 1),
        ("enc6 @256", "conv", 8, 512, 512, 2, 1),
        ("enc7 @256", "conv", 4, 512, 512, 2, 1),
        ("enc4 @128", "conv", 16, 256, 512, 2, 1),
        ("enc7 @128", "conv", 2, 512, 512, 2, 1),
        ("dec1 @256", "convT", 2, 512, 512, 2, 0),
        ("dec2 @256", "convT", 4, 1024, 512, 2, 0),
        ("dec3 @256", "convT", 8, 1024, 512, 2, 0),
        ("dec4 @256", "convT", 16, 1024, 256, 2, 0),
        ("dec5 @256", "convT", 32, 512, 128, 2, 0),
        ("dec6 @256", "convT", 64, 256, 64, 2, 0),
        ("dec4 @128", "convT", 8, 1024, 256, 2, 0),
        ("dec5 @128", "convT", 16, 512, 128, 2, 0),
        ("D layer4 x4 @256", "conv", 8, 256, 512, 1, 1),
        ("D layer4 x4 @128", "conv", 4, 256, 512, 1, 1),
        ("D layer4 x2 @256", "conv", 16, 256, 512, 1, 1),
    ]
    for name, kind, n, cin, cout, stride, pad in gemm_cases if "gemm" in args.only else ():
        res = _gemm_case(kind, n, cin, cout, stride, pad, args.repeats)
        out["gemm"].append(
            {"layer": name, "kind": kind, "input": n, "c_in": cin, "c_out": cout, "stride": stride, **res}
        )
        print(
            f"few {name:17s} {kind:5s} {n:3d}x{n:<3d} {cin:4d}->{cout:<4d} rows {res['rows']:5d} float32 fwd+bwd: "
            f"tf {res['tf']:7.2f} ms  gemm {res['gemm']:7.2f} ms x{res['tf'] / res['gemm']:.2f}   chosen: "
            f"{res['chosen']:5s} (max rel diff {res['max_rel_diff']:.1e})",
            flush=True,
        )
    path = Path(args.out)
    if path.exists() and set(args.only) != set(SECTIONS):
        # A partial run replaces only its own sections of an existing file.
        previous = json.loads(path.read_text())
        out = {**previous, **{k: v for k, v in out.items() if k in args.only}}
        out.setdefault("intra_op_threads_by_section", {}).update(
            {k: args.intra_op_threads or "tf default" for k in args.only}
        )
        out.setdefault("cpu_by_section", {}).update({k: cpu_summary() for k in args.only})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(path)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
