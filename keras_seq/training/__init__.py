"""The training application behind `keras-seq train` / `evaluate`."""
