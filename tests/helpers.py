"""Shared test helpers: small run directories and colourful random generators."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from colourise_tf.config import apply_overrides, get_preset, save_config
from colourise_tf.formats import run_dir as run_dir_format
from colourise_tf.layers import SpectralNorm
from colourise_tf.models import build_generator, generator_input_channels

S = 32  # the tiny preset's size


def make_run(run_dir: Path, overrides=(), *, gain: float = 10.0, seed: int = 0) -> Path:
    """A run directory by hand (config + one checkpoint). ``gain`` scales every conv
    kernel so the untrained tiny generator predicts clearly visible chroma."""
    cfg = apply_overrides(get_preset("tiny"), list(overrides))
    keras.utils.set_random_seed(seed)
    gen = build_generator(cfg.model)
    gen(tf.zeros([1, S, S, generator_input_channels(cfg.model)]))
    for v in gen.weights:
        if v.path.endswith("kernel"):
            v.assign(v * gain)
    save_config(cfg, run_dir_format.config_path(run_dir))
    ckpt = tf.train.Checkpoint(generator=gen, step=tf.Variable(0, dtype=tf.int64))
    tf.train.CheckpointManager(ckpt, run_dir_format.checkpoint_dir(run_dir), 1).save()
    return run_dir


def randomise_generator(generator, seed: int = 0, chroma_gain: float = 0.5) -> None:
    """He-normal kernels, jittered norm parameters and a damped last layer, so the
    chroma is far from zero (|ab| ~ 25 Lab units) but not stuck at tanh's +-1."""
    rng = np.random.default_rng(seed)
    for v in generator.weights:
        name, shape = v.path, tuple(v.shape)
        if name.endswith(("vector_u", "vector_v")) or "seed" in name:
            continue  # spectral-norm power-iteration state stays the unit vectors it is
        if name.endswith("kernel"):
            fan_in = int(np.prod(shape[:-1]))
            val = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape) * (chroma_gain if "chroma" in name else 1.0)
        elif name.endswith("moving_variance"):
            val = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("gamma"):
            val = 1.0 + 0.1 * rng.normal(size=shape)
        else:
            val = 0.1 * rng.normal(size=shape)
        v.assign(val.astype(np.float32))
    # Spectral norm: bring u, v in line with the new kernels, as training would.
    for layer in generator._flatten_layers():
        if isinstance(layer, SpectralNorm):
            w = layer._matrix().numpy()
            u = rng.normal(size=(1, w.shape[1]))
            for _ in range(30):
                v_ = u @ w.T
                v_ /= np.linalg.norm(v_)
                u = v_ @ w
                u /= np.linalg.norm(u)
            layer.vector_u.assign(u.astype(np.float32))
            layer.vector_v.assign(v_.astype(np.float32))


def values_and_grads(fn, x, kernel, dy) -> list[np.ndarray]:
    """``[fn(x, kernel), d/dx, d/dkernel]`` for the upstream gradient ``dy``, as numpy."""
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = fn(x, kernel)
    return [y.numpy()] + [g.numpy() for g in tape.gradient(y, [x, kernel], output_gradients=dy)]


def assert_matches_conv2d_transpose(impl, n, h, w, cin, cout, k, s, padding, seed: int, rtol: float = 1e-5) -> None:
    """``impl(x, kernel, out_shape, (s, s), padding)`` against ``tf.nn.conv2d_transpose``
    on random data: values and both gradients. ``kernel`` is ``[k, k, cout, cin]``."""
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(n, h, w, cin)).astype(np.float32))
    kern = tf.constant(rng.normal(size=(k, k, cout, cin)).astype(np.float32))
    oh, ow = (h * s, w * s) if padding == "SAME" else ((h - 1) * s + k, (w - 1) * s + k)
    out_shape = [n, oh, ow, cout]
    dy = tf.constant(rng.normal(size=out_shape).astype(np.float32))
    ref = values_and_grads(lambda x, kk: tf.nn.conv2d_transpose(x, kk, out_shape, s, padding), x, kern, dy)
    got = values_and_grads(lambda x, kk: impl(x, kk, out_shape, (s, s), padding), x, kern, dy)
    assert_all_close(got, ref, rtol=rtol)


def assert_all_close(got, ref, rtol: float) -> None:
    """Each array of ``got`` has the shape of ``ref``'s and is within ``rtol`` of it
    (absolute tolerance ``rtol`` times the reference's largest magnitude)."""
    for a, b in zip(got, ref):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def graph_ops(graph) -> list:
    """Every operation of a ``tf.Graph`` and of the function graphs it calls."""
    ops = list(graph.get_operations())
    for fn in getattr(graph, "_functions", {}).values():
        inner = getattr(fn, "graph", None)
        if inner is not None:
            ops += graph_ops(inner)
    return ops


def cpu_kernel_ops(graph) -> list[str]:
    """Names of the ops that only the CPU-only kernels create: anything in their name
    scope, and ``tf.custom_gradient`` wrappers inside the networks other than the
    normalisation layers' (IBN's fused kernel is device-neutral)."""
    from colourise_tf.ops import CPU_KERNEL_SCOPE

    found = []
    for op in graph_ops(graph):
        in_scope = f"{CPU_KERNEL_SCOPE}/" in op.name or op.name.startswith(CPU_KERNEL_SCOPE)
        in_network = "generator" in op.name or "discriminator" in op.name
        custom = (
            op.type == "IdentityN"
            and "_gradient_op_type" in op.node_def.attr
            and in_network
            and "norm" not in op.name.lower()
        )
        if in_scope or custom:
            found.append(op.name)
    return found


def train_command(workdir, *args: str, preset: str = "tiny") -> list[str]:
    """``colourise-train`` in a fresh interpreter: ``python -m colourise_tf.cli.train``
    on ``preset`` into ``workdir``, without a progress bar, then ``args``."""
    return [
        sys.executable, "-m", "colourise_tf.cli.train", "--preset", preset,
        "--workdir", str(workdir), "--no-progress", *args,
    ]  # fmt: skip
