"""Dispatch a recurrent level to a specialised training kernel (see keras_seq.ops)."""

from __future__ import annotations


def fast_level(
    cell, x, states, *, recurrent_mask, mask, go_backwards, return_sequences,
    zero_output_for_mask, training,
):
    """Return ``(last, outputs, final_states)`` from a specialised kernel, or None to use
    the generic runner (:func:`keras_seq.ops.recurrence`)."""
    return None
