"""Convolutions for the model layers, with the CPU-only kernels behind one gate.

The model layers (:mod:`colourise_tf.layers`) call only :func:`conv2d` and
:func:`conv2d_transpose`. With the gate off they are TensorFlow's ``tf.nn`` ops; with it
on (training on a CPU-only host, ``train.cpu_kernels=auto``) they may run one of the
kernels of this package, written and measured against oneDNN on CPUs
(``docs/cpu_kernels.md``):

* :mod:`.gemm_conv`: convs and transposed convs over few positions as GEMMs;
* :mod:`.winograd`: Winograd (Toom-Cook) float32 stride-1 convs;
* :mod:`.thin_conv`: convs to a few output channels in two steps;
* :mod:`.filter_grad`: kernel gradients as GEMMs.

The gate is :mod:`.gate`: :func:`cpu_kernels` sets the mode (``auto``, ``on``, ``off``)
while a step is traced, :func:`cpu_kernels_enabled` is what every kernel asks.
"""

from colourise_tf.ops.conv import conv2d, conv2d_transpose
from colourise_tf.ops.gate import CPU_KERNEL_SCOPE, cpu_kernels, cpu_kernels_enabled, cpu_only

__all__ = ["conv2d", "conv2d_transpose", "cpu_kernels", "cpu_kernels_enabled", "cpu_only", "CPU_KERNEL_SCOPE"]
