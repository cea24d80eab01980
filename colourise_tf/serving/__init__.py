"""SavedModel export for TF Serving and TFLite conversion for devices."""
