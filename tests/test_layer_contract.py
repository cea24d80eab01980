"""Every custom layer of colourise_tf.layers through the shared contract of
:func:`layer_testing.run_layer_test` (build, symbolic and eager calls, one training
step, bfloat16, config round trip). Shapes come from the conv arithmetic."""

from __future__ import annotations

import keras
import pytest
from layer_testing import run_layer_test

from colourise_tf.layers import (
    ConvBlock,
    FusedBatchNormalization,
    IBNorm,
    InstanceNormalization,
    MinSizeCheck,
    ReflectionPadding2D,
    SpectralNorm,
)

N, H, W, C = 2, 16, 16, 4


def _conv_out(n: int, k: int, s: int, padding, transpose: bool) -> int:
    """Output size of one spatial axis: "same" -> ceil(n / s) (x s when transposed);
    an int p -> floor((n + 2p - k) / s) + 1."""
    if transpose:
        return n * s if padding == "same" else (n - 1) * s + k
    if padding == "same":
        return -(-n // s)
    return (n + 2 * padding - k) // s + 1


CONV_BLOCKS = [
    dict(filters=8, norm="none", activation="leaky_relu"),
    dict(filters=8, norm="batch", activation="relu", dropout=0.5),
    dict(filters=8, norm="instance", spectral_norm=True, activation="leaky_relu"),
    dict(filters=8, norm="ibn", spectral_norm=True, activation="relu", transpose=True),
    dict(filters=8, kernel_size=4, strides=1, padding=1, norm="batch"),
    dict(filters=8, kernel_size=7, strides=1, padding=3, pad_mode="reflect", init="glorot_uniform", norm="batch"),
    dict(filters=2, norm="none", activation="tanh", use_bias=True, transpose=True),
]


@pytest.mark.parametrize("kwargs", CONV_BLOCKS, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()))
def test_conv_block_contract(kwargs):
    k, s = kwargs.get("kernel_size", 4), kwargs.get("strides", 2)
    padding, transpose = kwargs.get("padding", "same"), kwargs.get("transpose", False)
    out = _conv_out(H, k, s, padding, transpose)
    run_layer_test(lambda: ConvBlock(**kwargs), (N, H, W, C), (N, out, out, kwargs["filters"]))


@pytest.mark.parametrize(
    "make, input_shape, output_shape",
    [
        (lambda: keras.layers.Conv2D(6, 3, padding="same"), (N, 8, 8, 3), (N, 8, 8, 6)),
        (lambda: keras.layers.Conv2D(6, 4, strides=2, padding="valid"), (N, 9, 9, 3), (N, 3, 3, 6)),
        (lambda: keras.layers.Conv2DTranspose(5, 4, strides=2, padding="same"), (N, 8, 8, 3), (N, 16, 16, 5)),
        (lambda: keras.layers.Dense(7), (N, 5), (N, 7)),
    ],
    ids=["conv", "conv-valid-stride2", "conv-transpose", "dense"],
)
def test_spectral_norm_contract(make, input_shape, output_shape):
    run_layer_test(lambda: SpectralNorm(make()), input_shape, output_shape)


@pytest.mark.parametrize(
    "make, channels",
    [
        (lambda: IBNorm(ratio=0.5), 6),
        (lambda: IBNorm(ratio=0.25), 8),
        (lambda: InstanceNormalization(), 5),
        (lambda: FusedBatchNormalization(momentum=0.9, epsilon=1e-5), 5),
    ],
    ids=["ibn-half", "ibn-quarter", "instance", "fused-batch"],
)
def test_normalisation_contract(make, channels):
    run_layer_test(make, (N, 8, 8, channels), (N, 8, 8, channels))


def test_reflection_padding_contract():
    p = 2
    run_layer_test(
        lambda: ReflectionPadding2D(p), (N, 6, 7, 3), (N, 6 + 2 * p, 7 + 2 * p, 3), expect_trainable_weights=False
    )


def test_min_size_check_contract():
    run_layer_test(lambda: MinSizeCheck(4), (N, 6, 6, 3), (N, 6, 6, 3), expect_trainable_weights=False)
