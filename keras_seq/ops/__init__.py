"""Low-level recurrent kernels (TensorFlow) used by the layers."""

from keras_seq.ops.mode import export_mode, export_padding, in_export_mode
from keras_seq.ops.recurrent import recurrence

__all__ = ["export_mode", "export_padding", "in_export_mode", "recurrence"]
