"""One contract for every custom Keras layer, in the spirit of keras-hub's
``TestCase.run_layer_test``: :func:`run_layer_test` builds the layer, calls it
symbolically and eagerly, takes one training step, runs it under ``mixed_bfloat16`` and
round-trips its config and weights. Layer-specific numerics stay in their own tests.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf


def _tree(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _assert_finite(outputs, what: str) -> None:
    for y in _tree(outputs):
        assert np.all(np.isfinite(np.asarray(tf.cast(y, tf.float32)))), what


def run_layer_test(
    make: Callable[[], keras.layers.Layer],
    input_shape: tuple[int, ...],
    expected_output_shape: tuple[int | None, ...],
    *,
    expect_trainable_weights: bool = True,
    training_changes_output: bool = True,
    bfloat16: bool = True,
    bfloat16_atol: float = 0.1,
    seed: int = 0,
) -> dict[str, Any]:
    """Checks the layer ``make()`` builds against the common contract.

    1. **Build**: after ``build(input_shape)`` the layer is built, has trainable weights
       (unless ``expect_trainable_weights=False``) and ``compute_output_shape`` gives
       ``expected_output_shape``.
    2. **Symbolic call** on a ``keras.Input`` with an unknown batch: that shape again,
       batch ``None``.
    3. **Eager call** in inference and in training mode: finite outputs of that shape.
    4. **One training step**: gradients of a scalar of the output with respect to every
       trainable weight and to the input exist and are finite; one SGD step on the
       weights changes the inference output (``training_changes_output``).
    5. **bfloat16**: the same layer under the ``mixed_bfloat16`` policy keeps float32
       variables, computes in bfloat16 and gives finite outputs within
       ``bfloat16_atol`` of the float32 layer with the same weights.
    6. **Config round trip**: ``from_config(get_config())`` and
       ``keras.saving.serialize_keras_object`` / ``deserialize_keras_object`` give the
       same config; with the weights copied over, the same inference outputs.

    Returns:
        ``{"layer": the tested layer, "output": its inference output}``.
    """
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=input_shape).astype(np.float32))
    expected = tuple(expected_output_shape)

    keras.utils.set_random_seed(seed)
    layer = make()
    layer.build(input_shape)
    assert layer.built
    if expect_trainable_weights:
        assert layer.trainable_weights, f"{type(layer).__name__} has no trainable weights"
    assert tuple(layer.compute_output_shape(input_shape)) == expected

    symbolic = layer(keras.Input(input_shape[1:], batch_size=None))
    assert tuple(symbolic.shape) == (None, *expected[1:])

    y_inf = layer(x, training=False)
    y_train = layer(x, training=True)
    for y, mode in ((y_inf, "inference"), (y_train, "training")):
        assert tuple(y.shape) == expected, (mode, y.shape)
        _assert_finite(y, f"{mode} output")

    variables = layer.trainable_variables
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.square(tf.cast(layer(x, training=True), tf.float32)))
    grads = tape.gradient(loss, [x, *variables])
    assert grads[0] is not None, "no gradient reaches the input"
    for v, g in zip([x, *variables], grads):
        assert g is not None, f"no gradient for {getattr(v, 'path', 'the input')}"
        _assert_finite(g, f"gradient of {getattr(v, 'path', 'the input')}")
    if variables:
        before = np.asarray(layer(x, training=False))
        for v, g in zip(variables, grads[1:]):
            v.assign_sub(1e-2 * tf.cast(g, v.dtype) / (tf.norm(tf.cast(g, tf.float32)) + 1e-12))
        after = np.asarray(layer(x, training=False))
        if training_changes_output:
            assert np.abs(after - before).max() > 0, "a training step does not change the output"

    y_ref = np.asarray(layer(x, training=False))
    if bfloat16:
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_bfloat16")
        try:
            half = make()
            half.build(input_shape)
        finally:
            keras.config.set_dtype_policy(previous)
        assert all(v.dtype == "float32" for v in half.weights), [(v.path, v.dtype) for v in half.weights]
        half.set_weights(layer.get_weights())
        y_half = half(x, training=False)
        assert y_half.dtype == tf.bfloat16, y_half.dtype
        _assert_finite(y_half, "bfloat16 output")
        np.testing.assert_allclose(np.asarray(tf.cast(y_half, tf.float32)), y_ref, atol=bfloat16_atol, rtol=0.05)

    config = layer.get_config()
    clone = type(layer).from_config(copy.deepcopy(config))  # Keras' wrappers pop keys from it
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config
    clone.build(input_shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x, training=False)), y_ref, rtol=1e-6, atol=1e-6)
    return {"layer": layer, "output": y_ref}
