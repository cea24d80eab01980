"""Console scripts: ``colourise`` (:mod:`.colourise`), ``colourise-train`` (:mod:`.train`)
and ``colourise-export`` (:mod:`.export`); ``colourise-eval`` and ``colourise-prepare``
live beside the code they drive (:mod:`colourise_tf.evaluate`, :mod:`colourise_tf.prepare`).
Each also runs as ``python -m colourise_tf.cli.<name>``."""
