"""Console scripts, each also runnable as ``python -m colourise_tf.cli.<name>``:
``colourise`` (:mod:`.colourise`), ``colourise-train`` (:mod:`.train`),
``colourise-export`` (:mod:`.export`), ``colourise-eval`` (:mod:`.eval`) and
``colourise-prepare`` (:mod:`.prepare`). They parse arguments and report errors; the
work is done by the library modules they call."""
