"""Language model: prompt text -> greedy continuation.

=================  =========================================  ===============================
signature          inputs                                     outputs
=================  =========================================  ===============================
serving_default    ``text`` string ``[N]`` (SavedModel only)  ``text`` string ``[N]``, the
                                                              continuation (prompt excluded)
next_token         ``token_ids`` int32 ``[B, T]``             ``logits`` ``[B, T, V]``
=================  =========================================  ===============================

``logits[:, t]`` scores the token after position ``t`` (the model's own output). The
continuation is greedy: ``metadata.json``'s ``decoding.length`` tokens, each the argmax of the
last position's logits with the padding id 0 excluded (``LanguageModel.generate`` with
``temperature=0``). In the SavedModel this is ``generate`` itself (prompt read once, then
single steps carrying the states); runtimes that only have ``next_token`` (TFLite, ONNX)
re-read the growing text at each step, which gives the same tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from keras_seq.export.tasks.base import Probe, Runner, Signature, TaskClient, TaskGraphs
from keras_seq.export.tasks.text_graph import decode_ids, padded_ids

__all__ = ["LanguageModelClient", "LanguageModelGraphs"]


class LanguageModelGraphs(TaskGraphs):
    task = "language_model"

    @property
    def length(self) -> int:
        return int(self.bundle.config.get("train", {}).get("generate_length", 40))

    def signatures(self) -> list[Signature]:
        model = self.model

        def next_token(inputs: dict[str, Any]) -> dict[str, Any]:
            return {"logits": model(inputs["token_ids"], training=False)}

        return [Signature("next_token", next_token, {"token_ids": ("int32", (None, None))})]

    def serving_outputs(self) -> tuple[str, ...]:
        return ("text",)

    def serve(self, text: Any) -> dict[str, Any]:
        vocab = self.vocabularies["source"]
        tokens = self.model.generate(padded_ids(vocab, text), self.length, temperature=0.0, seed=0)
        return {"text": decode_ids(vocab, tokens)}

    def metadata(self) -> dict[str, Any]:
        return {"decoding": {"method": "greedy", "length": self.length, "banned_ids": [0]}}


class LanguageModelClient(TaskClient):
    task = "language_model"
    primary = "next_token"

    def probe(
        self, run: Runner, text: str, reference: Probe | None = None, readable: bool = False
    ) -> Probe:
        ids = self.token_ids(text)
        logits = run("next_token", {"token_ids": ids})["logits"][0]  # (T, V)
        output = {}
        if readable:
            output = {"output": self.continue_text(run, ids)}
        return Probe(values=np.asarray(logits, np.float64), top1=_best(logits[-1]), output=output)

    def continue_text(self, run: Runner, ids: np.ndarray) -> str:
        """Greedy continuation through ``next_token`` (re-reading the growing text)."""
        generated: list[int] = []
        for _ in range(int(self.metadata["decoding"]["length"])):
            logits = run("next_token", {"token_ids": ids})["logits"][0, -1]
            token = _best(logits)
            generated.append(token)
            # Without the empty prompt's padding placeholder: a 0 before a token is left
            # padding, which the artifacts refuse.
            ids = np.concatenate([ids[:, ids[0] != 0], np.asarray([[token]], np.int32)], axis=1)
        return self.vocabularies["source"].decode([generated])[0]

    def predict(self, run: Runner, text: str) -> dict[str, Any]:
        return {"input": text, **self.probe(run, text, readable=True).output}

    @staticmethod
    def from_serving(text: str, outputs: Mapping[str, Any]) -> dict[str, Any]:
        value = outputs["text"] if isinstance(outputs, Mapping) else outputs
        value = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        return {"input": text, "output": value}


def _best(logits: np.ndarray) -> int:
    """Argmax over the vocabulary, never the padding id 0 (as ``generate``)."""
    scores = np.array(logits, dtype=np.float64)
    scores[0] = -np.inf
    return int(np.argmax(scores))
