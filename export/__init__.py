"""Export: SavedModel for TF Serving and TFLite for devices."""
