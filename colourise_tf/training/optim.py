"""Optimisers for the GAN step.

:class:`FusedAdam` is ``keras.optimizers.Adam`` whose dense update is TensorFlow's
fused ``ResourceApplyAdam`` kernel: one pass over each variable and its two slots
instead of about ten element-wise ops, each a full pass over memory. On the 2-core
CPU the ~50 M parameters of a Gorriz model made the Keras update about 5% of a
256x256 training step. Same hyper-parameters, slots, checkpoint layout and formula
(Kingma & Ba with the bias correction folded into the step size, epsilon outside
the square root, as Keras):

    m <- beta1 m + (1 - beta1) g;   v <- beta2 v + (1 - beta2) g^2
    w <- w - lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon)

AMSGrad, sparse gradients and non-TensorFlow backends use the Keras update.
"""

from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["FusedAdam"]


@keras.saving.register_keras_serializable(package="colourise_tf")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with the dense update done by one fused TF kernel."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices) or keras.backend.backend() != "tensorflow":
            return super().update_step(gradient, variable, learning_rate)
        idx = self._get_variable_index(variable)
        var = variable.value if isinstance(variable, keras.Variable) else variable
        m, v = (s.value if isinstance(s, keras.Variable) else s for s in (self._momentums[idx], self._velocities[idx]))
        dtype = var.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        return tf.raw_ops.ResourceApplyAdam(
            var=var.handle,
            m=m.handle,
            v=v.handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
            use_locking=False,
            use_nesterov=False,
        )
