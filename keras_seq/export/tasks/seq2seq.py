"""Sequence to sequence: source text -> greedy translation.

=================  ==========================================  ==============================
signature          inputs                                      outputs
=================  ==========================================  ==============================
serving_default    ``text`` string ``[N]`` (SavedModel only)   ``translation`` string ``[N]``
encode             ``source_ids`` int32 ``[B, S]``             ``encoder_outputs [B, S, U]``,
                                                               ``encoder_mask`` bool ``[B, S]``,
                                                               ``state_0 .. state_{k-1}``
decode_step        ``token_ids`` int32 ``[B]``,                ``log_probs [B, V]``,
                   ``encoder_outputs``, ``encoder_mask``,      ``attention [B, S]``,
                   ``state_0 .. state_{k-1}``                  ``next_state_0 ..``
translate          ``source_ids`` int32 ``[B, S]``             ``token_ids`` int32 ``[B, L]``
                   (SavedModel and TFLite)
=================  ==========================================  ==============================

The states are ``Seq2Seq.encode``'s decoder states in order (LSTM ``h_0, c_0, h_1, ...``, then
``h~`` with input feeding), each ``[B, units]``. Greedy decoding (``Seq2Seq.translate``): start
with token 2, feed back the argmax of ``log_probs`` with ids 0 and 2 excluded, stop after
token 3 or ``decoding.max_length`` tokens. ``translate`` runs that loop in one graph with
``L = max_length`` (zeros after the end token); ONNX has no ``translate``: drive
``model_encoder.onnx`` and ``model_decoder_step.onnx`` with that loop (``keras-seq predict``
does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from keras_seq.export.tasks.base import Probe, Runner, Signature, TaskClient, TaskGraphs
from keras_seq.export.tasks.text_graph import decode_ids, padded_ids

__all__ = ["Seq2SeqClient", "Seq2SeqGraphs", "greedy_translate"]

PAD_ID, START_ID, END_ID = 0, 2, 3
BANNED_IDS = (PAD_ID, START_ID)


def greedy_translate(model: Any, source_ids: Any, max_length: int) -> Any:
    """Greedy decoding as ``Seq2Seq.translate`` in a loop of TFLite builtins.

    The loop carries fixed-shape tensors only (no TensorArray of unknown element shape):
    the tokens ``[B, max_length]`` are accumulated with a one-hot column update.
    Returns int32 ``[B, max_length]``, 0 after each sequence's end token.
    """
    import tensorflow as tf

    encoder_outputs, encoder_mask, states = model.encode(source_ids)
    batch = tf.shape(source_ids)[0]
    vocab = model.tgt_vocab_size
    banned = np.zeros([vocab], np.float32)
    banned[list(BANNED_IDS)] = 1.0
    banned = tf.constant(banned)[None, :] > 0.5  # (1, V)
    columns = tf.range(max_length)[None, :]  # (1, L)

    def body(t, previous, states, done, tokens):
        log_probs, states, _ = model.decode_step(previous, states, encoder_outputs, encoder_mask)
        log_probs = tf.where(banned, tf.constant(-np.inf, log_probs.dtype), log_probs)
        best = tf.argmax(log_probs, axis=-1, output_type=tf.int32)  # (B,)
        best = tf.where(done, 0, best)
        tokens = tokens + tf.cast(tf.equal(columns, t), tf.int32) * best[:, None]
        done = done | tf.equal(best, END_ID)
        return t + 1, best, states, done, tokens

    loop = tf.while_loop(
        lambda t, _p, _s, done, _tok: (t < max_length) & ~tf.reduce_all(done),
        body,
        (
            tf.constant(0),
            tf.fill([batch], tf.constant(START_ID, tf.int32)),
            states,
            tf.zeros([batch], tf.bool),
            tf.zeros(tf.stack([batch, max_length]), tf.int32),
        ),
        maximum_iterations=max_length,
    )
    return loop[-1]


class Seq2SeqGraphs(TaskGraphs):
    task = "seq2seq"

    @property
    def max_length(self) -> int:
        return self.bundle.max_decode_length

    def state_count(self) -> int:
        """Number of decoder state tensors (``len(model.encode(...)[2])``)."""
        import tensorflow as tf

        _, _, states = self.model.encode(tf.constant([[4]], tf.int32))
        return len(states)

    def signatures(self) -> list[Signature]:
        model, n, units = self.model, self.state_count(), self.model.units
        states = {f"state_{i}": ("float32", (None, units)) for i in range(n)}

        def encode(inputs: dict[str, Any]) -> dict[str, Any]:
            outputs, mask, initial = model.encode(inputs["source_ids"])
            result = {"encoder_outputs": outputs, "encoder_mask": mask}
            result.update({f"state_{i}": s for i, s in enumerate(initial)})
            return result

        def decode_step(inputs: dict[str, Any]) -> dict[str, Any]:
            log_probs, new, weights = model.decode_step(
                inputs["token_ids"],
                [inputs[f"state_{i}"] for i in range(n)],
                inputs["encoder_outputs"],
                inputs["encoder_mask"],
            )
            result = {"log_probs": log_probs, "attention": weights}
            result.update({f"next_state_{i}": s for i, s in enumerate(new)})
            return result

        max_length = self.max_length

        def translate(inputs: dict[str, Any]) -> dict[str, Any]:
            return {"token_ids": greedy_translate(model, inputs["source_ids"], max_length)}

        return [
            Signature("encode", encode, {"source_ids": ("int32", (None, None))},
                      onnx_file="model_encoder.onnx"),
            Signature(
                "decode_step",
                decode_step,
                {
                    "token_ids": ("int32", (None,)),
                    "encoder_outputs": ("float32", (None, None, units)),
                    "encoder_mask": ("bool", (None, None)),
                    **states,
                },
                onnx_file="model_decoder_step.onnx",
            ),
            Signature("translate", translate, {"source_ids": ("int32", (None, None))},
                      formats=("saved_model", "tflite")),
        ]

    def serving_outputs(self) -> tuple[str, ...]:
        return ("translation",)

    def serve(self, text: Any) -> dict[str, Any]:
        source_ids = padded_ids(self.vocabularies["source"], text)
        tokens, _ = self.model.translate(source_ids, max_length=self.max_length, method="greedy")
        return {"translation": decode_ids(self.vocabularies["target"], tokens)}

    def metadata(self) -> dict[str, Any]:
        return {
            "decoding": {
                "method": "greedy",
                "max_length": self.max_length,
                "start_id": START_ID,
                "end_id": END_ID,
                "banned_ids": list(BANNED_IDS),
                "states": self.state_count(),
            }
        }


class Seq2SeqClient(TaskClient):
    task = "seq2seq"
    primary = "translate"

    def probe(
        self, run: Runner, text: str, reference: Probe | None = None, readable: bool = True
    ) -> Probe:
        """Greedy decoding through ``encode`` / ``decode_step``. With ``reference``, the fed
        tokens are the reference's (so step probabilities are compared on the same path) and
        ``top1`` is this runtime's own argmax at every step: equal to the reference's tokens
        exactly when its free-running greedy decoding gives the same translation."""
        decoding = self.metadata["decoding"]
        n = int(decoding["states"])
        encoded = run("encode", {"source_ids": self.token_ids(text)})
        states = {f"state_{i}": encoded[f"state_{i}"] for i in range(n)}
        forced = None if reference is None else list(reference.top1)
        steps = int(decoding["max_length"]) if forced is None else len(forced)
        token, chosen, probabilities = START_ID, [], []
        for t in range(steps):
            out = run(
                "decode_step",
                {
                    "token_ids": np.asarray([token], np.int32),
                    "encoder_outputs": encoded["encoder_outputs"],
                    "encoder_mask": encoded["encoder_mask"],
                    **states,
                },
            )
            log_probs = np.asarray(out["log_probs"][0], np.float64)
            probabilities.append(np.exp(log_probs))
            scores = log_probs.copy()
            scores[list(decoding["banned_ids"])] = -np.inf
            best = int(np.argmax(scores))
            chosen.append(best)
            states = {f"state_{i}": out[f"next_state_{i}"] for i in range(n)}
            token = best if forced is None else forced[t]
            if forced is None and best == END_ID:
                break
        output = {"output": self.vocabularies["target"].decode([chosen])[0]} if readable else {}
        return Probe(values=np.stack(probabilities), top1=tuple(chosen), output=output)

    @staticmethod
    def from_serving(text: str, outputs: Mapping[str, Any]) -> dict[str, Any]:
        value = outputs["translation"] if isinstance(outputs, Mapping) else outputs
        value = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        return {"input": text, "output": value}
