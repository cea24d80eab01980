"""What a SavedModel export carries besides its graph, in ``<version>/assets/``:

* ``colourise_config.json``: the resolved experiment configuration (same schema as a
  run directory's ``config.json``), so a loader rebuilds the model's contract;
* ``colourise_export.json``: export metadata (keys shared with the TFLite sidecar,
  :mod:`colourise_tf.formats.tflite_files`).

Written by :mod:`colourise_tf.serving.savedmodel`, read by
:class:`colourise_tf.predictors.SavedModelPredictor`.
"""

from __future__ import annotations

import os

ASSETS = "assets"
CONFIG_ASSET = "colourise_config.json"
METADATA_ASSET = "colourise_export.json"
#: Relative to the version directory.
CONFIG_PATH = os.path.join(ASSETS, CONFIG_ASSET)
METADATA_PATH = os.path.join(ASSETS, METADATA_ASSET)
