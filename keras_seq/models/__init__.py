"""Task models: sequence classification, language modelling, sequence-to-sequence.

All are subclassed ``keras.Model`` registered under the package ``keras_seq`` (they survive
``model.save("m.keras")`` / ``keras.saving.load_model(..., safe_mode=True)``), use the
project's token ids (0 padding, 1 out-of-vocabulary, 2 start, 3 end) and default
``compile()`` to their own loss. :mod:`keras_seq.models.decoding` holds greedy and beam
search over any step function.
"""

from keras_seq.models.classifier import SequenceClassifier
from keras_seq.models.ensemble import Ensemble
from keras_seq.models.language_model import LanguageModel
from keras_seq.models.pooling import AttentionPooling
from keras_seq.models.seq2seq import Seq2Seq

__all__ = ["AttentionPooling", "Ensemble", "LanguageModel", "Seq2Seq", "SequenceClassifier"]
