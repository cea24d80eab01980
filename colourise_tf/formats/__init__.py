"""The on-disk contracts, one module each; writers and readers both use them.

* :mod:`.run_dir`: a training run directory (``config.json``, ``checkpoints/``, ...);
* :mod:`.savedmodel_assets`: the files a SavedModel export carries in ``assets/``;
* :mod:`.tflite_files`: ``.tflite`` variant names and their sidecar JSON;
* :mod:`.model_description`: the generator's description both exports carry.
"""
