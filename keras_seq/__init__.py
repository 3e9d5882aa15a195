"""keras_seq: recurrent and attention sequence models for Keras 3."""
