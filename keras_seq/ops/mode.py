"""Graph-shape switch: training graphs are built for speed, export graphs for the converters.

Inside ``with export_mode():`` the recurrent layers trace the loop shapes that TensorFlow's
exporters recognise (a fused TFLite ``UNIDIRECTIONAL_SEQUENCE_LSTM``, native ONNX ``LSTM`` /
``GRU`` nodes). Both shapes compute the same function with the same weights (tested).
"""

import contextlib
import threading
from collections.abc import Iterator

_state = threading.local()


def in_export_mode() -> bool:
    """True while tracing inside :func:`export_mode`."""
    return getattr(_state, "depth", 0) > 0


@contextlib.contextmanager
def export_mode() -> Iterator[None]:
    """Trace recurrent layers in their exporter-friendly form (re-entrant, thread-local)."""
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1
