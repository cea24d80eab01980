"""Training: the custom tf.function GAN step, tf.distribute, checkpoints, TensorBoard and the CLI."""
