"""Graph-shape switch: training graphs are built for speed, export graphs for the converters.

Inside ``with export_mode():`` the recurrent layers trace the loop shapes that TensorFlow's
exporters recognise (a fused TFLite ``UNIDIRECTIONAL_SEQUENCE_LSTM``, native ONNX ``LSTM`` /
``GRU`` / ``RNN`` nodes). Both shapes compute the same function with the same weights (tested).

``padding`` says what the exporter promises about masks, since a general mask has no fused
or native form:

* ``"any"`` (default): any mask; masked loops are builtins-only ``WHILE`` / ONNX ``Loop``.
* ``"right"``: every mask is a right-padding (prefix) mask, as the pipelines produce; it is
  turned into sequence lengths, which native ONNX nodes take (``sequence_lens``).
* ``"none"``: inputs are never padded (e.g. TFLite at batch 1, fed at the exact length), so
  masks are all-True and are dropped; this is what lets an LSTM fuse in TFLite.
"""

import contextlib
import threading
from collections.abc import Iterator

PADDINGS = ("any", "right", "none")

_state = threading.local()


def in_export_mode() -> bool:
    """True while tracing inside :func:`export_mode`."""
    return bool(getattr(_state, "stack", None))


def export_padding() -> str:
    """The ``padding`` promise of the innermost :func:`export_mode` (``"any"`` outside)."""
    stack = getattr(_state, "stack", None)
    return stack[-1] if stack else "any"


@contextlib.contextmanager
def export_mode(padding: str = "any") -> Iterator[None]:
    """Trace recurrent layers in their exporter-friendly form (re-entrant, thread-local)."""
    if padding not in PADDINGS:
        raise ValueError(
            "Invalid value for argument `padding`. Expected one of "
            f"{{'any', 'right', 'none'}}. Received: padding={padding!r}"
        )
    if not hasattr(_state, "stack"):
        _state.stack = []
    _state.stack.append(padding)
    try:
        yield
    finally:
        _state.stack.pop()
