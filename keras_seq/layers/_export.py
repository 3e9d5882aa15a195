"""Dispatch a recurrent level to its exporter-shaped graph (see keras_seq.ops.export_graph)."""

from __future__ import annotations


def export_level(cell, x, states, *, mask, go_backwards, return_sequences, zero_output_for_mask):
    """Return ``(last, outputs, final_states)`` from the export graph, or None to use the
    training graph (which is itself builtins-only convertible)."""
    return None
