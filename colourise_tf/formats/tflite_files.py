"""``.tflite`` exports: one file per numeric variant and one sidecar JSON::

    <out>/<name>_<variant>.tflite     for each variant in VARIANTS
    <out>/<name>.json                 sidecar: the model's contract (image size, colour
                                      space, input channels, ...)

Written by :mod:`colourise_tf.serving.tflite`, read by
:class:`colourise_tf.predictors.TFLitePredictor`.
"""

from __future__ import annotations

#: The numeric variants, in export order.
VARIANTS = ("float32", "float16", "dynamic_int8", "int8")


def model_file(name: str, variant: str) -> str:
    """``<name>_<variant>.tflite``."""
    return f"{name}_{variant}.tflite"


def sidecar_file(name: str) -> str:
    """``<name>.json``."""
    return f"{name}.json"


def strip_variant(stem: str) -> str:
    """``m_dynamic_int8`` -> ``m``: the stem without a known ``_<variant>`` suffix
    (unchanged if it has none). The longest suffix wins (``dynamic_int8`` before ``int8``)."""
    for variant in sorted(VARIANTS, key=len, reverse=True):
        if stem.endswith("_" + variant) and len(stem) > len(variant) + 1:
            return stem[: -len(variant) - 1]
    return stem
