"""colourise_tf: GAN-based image colourisation in Keras 3 / TensorFlow 2."""
