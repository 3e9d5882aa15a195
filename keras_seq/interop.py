"""Weight import from (and export to) ``torch.nn.RNN``, ``torch.nn.LSTM`` and ``torch.nn.GRU``.

``from_torch(module)`` returns a built keras_seq layer that computes what ``module`` computes:
for ``x [B, T, D]``, ``layer(x) == module(x)[0]`` (the full output sequence ``[B, T, dirs*U]``).
``to_torch(layer)`` goes the other way. PyTorch is an optional dependency
(``pip install 'keras_seq[torch]'``, or ``pip install -e '.[torch]'`` from a checkout),
imported only when these functions run.

Weight mapping, per level ``k`` (and per direction: torch suffix ``_reverse`` is the backward
layer of :class:`keras_seq.layers.Bidirectional`), with ``G`` gates of ``U`` units::

    torch                                   keras_seq
    weight_ih_l{k}  [G*U, D_k]              cell.kernel            [D_k, G*U] = W_ih^T
    weight_hh_l{k}  [G*U, U]                cell.recurrent_kernel  [U, G*U]   = W_hh^T
    bias_ih_l{k}, bias_hh_l{k}  [G*U]       RNN, LSTM: cell.bias [G*U] = b_ih + b_hh
                                            GRU: cell.bias [2, G*U] = [b_ih, b_hh]

``D_0 = D``; deeper levels read ``D_k = U`` (``2U`` when bidirectional). Gate order: LSTM
``i, f, g, o`` in both; GRU torch ``r, z, n`` against Keras ``z, r, h``, so the first two
blocks swap (the permutation is its own inverse). torch's GRU is Keras's ``reset_after=True``
form, ``n = tanh(x W_n + b_in + r * (h R_n + b_hn))``, which is why the two GRU biases stay
apart. ``bias=False`` maps to ``use_bias=False``, ``dropout`` (between levels) to
``inter_layer_dropout``, ``nonlinearity`` to the SimpleRNN ``activation``.

``batch_first`` does not change the weights: the Keras layer is always batch-major
``[B, T, D]``, whatever ``module.batch_first`` says (a ``batch_first=False`` module's inputs
must be transposed to ``[B, T, D]`` for the Keras layer). ``proj_size > 0`` (projected LSTM)
has no keras_seq equivalent and is rejected.

Example:
    >>> import torch
    >>> module = torch.nn.LSTM(5, 6, num_layers=2, bidirectional=True, batch_first=True)
    >>> layer = from_torch(module)  # Bidirectional(LSTM(6, num_layers=2, ...))
    >>> x = torch.randn(3, 7, 5)
    >>> y = layer(x.numpy())  # == module(x)[0], [3, 7, 12]
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["from_torch", "to_torch"]

_INSTALL_HINT = ("Install it with `pip install 'keras_seq[torch]'`, or from a checkout "
                 "`pip install -e '.[torch]'`.")
_MODES = {"RNN_TANH": "tanh", "RNN_RELU": "relu", "LSTM": None, "GRU": None}
_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _import_torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "keras_seq.interop needs PyTorch, which is not installed. " + _INSTALL_HINT
        ) from err
    return torch


def _gru_order(units: int) -> np.ndarray:
    """Row/column permutation between torch ``r, z, n`` and Keras ``z, r, h`` (self-inverse)."""
    return np.concatenate(
        [np.arange(units, 2 * units), np.arange(units), np.arange(2 * units, 3 * units)]
    )


# -- torch -> keras -------------------------------------------------------------------------


def from_torch(
    module: Any,
    *,
    return_sequences: bool = True,
    return_state: bool = False,
    name: str | None = None,
):
    """Build a keras_seq layer equal to a ``torch.nn.RNN``, ``LSTM`` or ``GRU``.

    Args:
        module: ``torch.nn.RNN`` (``tanh`` or ``relu``), ``torch.nn.LSTM`` (``proj_size=0``)
            or ``torch.nn.GRU``; any ``num_layers``, ``bidirectional``, ``bias``,
            ``dropout`` and ``batch_first`` (the Keras layer is batch-major either way).
        return_sequences: passed to the Keras layer. With the default ``True``,
            ``layer(x [B, T, D]) == module(x)[0]`` ``[B, T, dirs*U]``.
        return_state: passed to the Keras layer. States come per level in order
            (LSTM ``h_0, c_0, h_1, c_1, ...``), forward states then backward states when
            bidirectional; torch's ``h_n [num_layers*dirs, B, U]`` orders them
            ``level 0 forward, level 0 backward, level 1 forward, ...``.
        name: name of the returned layer.

    Returns:
        A built ``keras_seq.layers.SimpleRNN``, ``LSTM`` or ``GRU`` (``num_layers`` levels),
        wrapped in ``keras_seq.layers.Bidirectional(merge_mode="concat")`` when the module is
        bidirectional, holding the module's weights in the module's floating dtype.

    Raises:
        ImportError: PyTorch is not installed.
        ValueError: ``module`` is not a supported torch recurrent module.
    """
    torch = _import_torch()
    from keras_seq import layers

    supported = (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)
    if not isinstance(module, supported) or getattr(module, "mode", None) not in _MODES:
        raise ValueError(
            "Invalid value for argument `module`. Expected torch.nn.RNN, LSTM or GRU. "
            f"Received: module={_short_repr(module)}"
        )
    if getattr(module, "proj_size", 0):
        raise ValueError(
            "Invalid value for argument `module`. Expected torch.nn.LSTM with proj_size=0 "
            "(keras_seq's LSTM has no output projection). "
            f"Received: module={module!r} with proj_size={module.proj_size}"
        )
    dtype = str(module.weight_ih_l0.dtype).removeprefix("torch.")
    if dtype not in _FLOAT_DTYPES:
        raise ValueError(
            "Invalid value for argument `module`. Expected floating-point weights "
            f"(one of {_FLOAT_DTYPES}). Received: module={module!r} with dtype={dtype}"
        )

    units, levels = module.hidden_size, module.num_layers
    if levels > 1 and not 0 <= module.dropout < 1:  # torch takes 1 (everything dropped)
        raise ValueError(
            "Invalid value for argument `module`. Expected dropout in [0, 1) between levels "
            f"(keras_seq's inter_layer_dropout). Received: module={module!r} with "
            f"dropout={module.dropout}"
        )
    options: dict[str, Any] = {
        "num_layers": levels,
        "use_bias": bool(module.bias),
        "inter_layer_dropout": float(module.dropout) if levels > 1 else 0.0,
        "return_sequences": return_sequences,
        "return_state": return_state,
        # Padded steps output zeros, as torch's pad_packed_sequence (and Bidirectional) give.
        "zero_output_for_mask": return_sequences,
        "dtype": dtype,
        "name": None if module.bidirectional else name,
    }
    if dtype == "bfloat16":  # the default orthogonal initializer needs a QR, not in bfloat16
        options["recurrent_initializer"] = "glorot_uniform"
    if module.mode == "LSTM":
        layer = layers.LSTM(units, **options)
    elif module.mode == "GRU":
        layer = layers.GRU(units, reset_after=True, **options)
    else:
        layer = layers.SimpleRNN(units, activation=_MODES[module.mode], **options)
    if module.bidirectional:
        layer = layers.Bidirectional(layer, merge_mode="concat", name=name, dtype=dtype)
        directions = [(layer.forward_layer, ""), (layer.backward_layer, "_reverse")]
    else:
        directions = [(layer, "")]
    layer.build((None, None, module.input_size))

    for sub, suffix in directions:
        for k, cell in enumerate(sub.cells):
            _load_cell(cell, module, f"l{k}{suffix}")
    return layer


def _load_cell(cell, module, key: str) -> None:
    # The weights forward() uses are attributes: a pruned or parametrized (weight_norm)
    # module keeps its parameters under other names ("weight_hh_l0_orig", ...).
    def weight(name: str) -> np.ndarray | None:
        value = getattr(module, f"{name}_{key}", None)
        return None if value is None else _to_numpy(value)

    w_ih, w_hh = weight("weight_ih"), weight("weight_hh")  # [G*U, D], [G*U, U]
    b_ih, b_hh = weight("bias_ih"), weight("bias_hh")  # [G*U]
    mode = module.mode
    if mode == "GRU":
        order = _gru_order(cell.units)
        w_ih, w_hh = w_ih[order], w_hh[order]
        bias = None if b_ih is None else np.stack([b_ih[order], b_hh[order]])  # [2, 3U]
    else:
        bias = None if b_ih is None else b_ih + b_hh  # [G*U]
    cell.kernel.assign(w_ih.T)
    cell.recurrent_kernel.assign(w_hh.T)
    if bias is not None:
        cell.bias.assign(bias)


def _to_numpy(tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if str(tensor.dtype) == "torch.bfloat16":  # NumPy has no bfloat16
        tensor = tensor.float()
    return tensor.numpy()


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


# -- keras -> torch -------------------------------------------------------------------------


def to_torch(layer: Any):
    """Build a ``torch.nn.RNN``, ``LSTM`` or ``GRU`` (``batch_first=True``) equal to ``layer``.

    The inverse of :func:`from_torch`: ``module(x)[0]`` equals the Keras layer's output
    sequence ``[B, T, dirs*U]`` (the torch module always returns the full sequence and
    ``h_n``; ``return_sequences`` / ``return_state`` / ``stateful`` do not carry over).
    Combined biases go to ``bias_ih`` with ``bias_hh = 0`` (RNN, LSTM); GRU keeps both.

    Args:
        layer: a built ``keras_seq.layers.SimpleRNN`` (``tanh`` or ``relu``), ``LSTM``
            (plain: no peephole, no coupled gates, ``tanh`` / ``sigmoid``) or ``GRU``
            (``reset_after=True``, ``tanh`` / ``sigmoid``), with ``go_backwards=False``; or a
            ``keras_seq.layers.Bidirectional`` with ``merge_mode="concat"`` around one.

    Returns:
        A ``torch.nn`` module in eval mode, in the layer's variable dtype. Cell ``dropout`` and
        ``recurrent_dropout`` have no torch equivalent and are dropped with a warning;
        ``inter_layer_dropout`` becomes ``dropout``.

    Raises:
        ImportError: PyTorch is not installed.
        ValueError: ``layer`` has no torch equivalent or is not built.
    """
    torch = _import_torch()
    from keras_seq import layers

    if isinstance(layer, layers.Bidirectional):
        if layer.merge_mode != "concat":
            raise ValueError(
                "Invalid value for argument `layer`. Expected a Bidirectional layer with "
                f"merge_mode='concat' (torch concatenates both directions). "
                f"Received: merge_mode={layer.merge_mode!r}"
            )
        directions = [(layer.forward_layer, ""), (layer.backward_layer, "_reverse")]
    elif isinstance(layer, (layers.SimpleRNN, layers.LSTM, layers.GRU)):
        if layer.go_backwards:
            raise ValueError(
                "Invalid value for argument `layer`. Expected go_backwards=False (torch "
                "recurrent modules have no backwards-only form). Received: go_backwards=True"
            )
        directions = [(layer, "")]
    else:
        raise ValueError(
            "Invalid value for argument `layer`. Expected keras_seq.layers.SimpleRNN, LSTM, "
            f"GRU or Bidirectional. Received: layer={_short_repr(layer)}"
        )
    first = directions[0][0]
    for sub, _ in directions:
        _check_exportable(sub, first)
    mode = _torch_mode(first)

    cell = first.cell
    units, levels = first.units, first.num_layers
    kwargs: dict[str, Any] = {
        "input_size": int(cell.kernel.shape[0]),
        "hidden_size": units,
        "num_layers": levels,
        "bias": cell.use_bias,
        "batch_first": True,
        "dropout": first.inter_layer_dropout if levels > 1 else 0.0,
        "bidirectional": len(directions) == 2,
    }
    if mode in ("RNN_TANH", "RNN_RELU"):
        module = torch.nn.RNN(nonlinearity=_MODES[mode], **kwargs)
    else:
        module = getattr(torch.nn, mode)(**kwargs)
    module = module.to(getattr(torch, str(cell.kernel.dtype)))

    params = dict(module.named_parameters())
    with torch.no_grad():
        for sub, suffix in directions:
            for k, level_cell in enumerate(sub.cells):
                for key, value in _cell_to_torch(level_cell, mode).items():
                    target = params[f"{key}_l{k}{suffix}"]
                    target.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(target.dtype))
    return module.eval()


def _torch_mode(layer) -> str:
    from keras_seq import layers

    if isinstance(layer, layers.LSTM):
        return "LSTM"
    if isinstance(layer, layers.GRU):
        return "GRU"
    return "RNN_RELU" if _activation_name(layer.cell.activation) == "relu" else "RNN_TANH"


def _activation_name(fn: Any) -> str:
    import keras

    try:
        name = keras.activations.serialize(fn)
    except (TypeError, ValueError):
        return repr(fn)
    return name if isinstance(name, str) else repr(name)


def _describe(layer) -> str:
    return (f"{type(layer).__name__}(units={layer.units}, num_layers={layer.num_layers}, "
            f"use_bias={layer.cell.use_bias}, "
            f"activation={_activation_name(layer.cell.activation)!r})")


def _check_exportable(layer, first) -> None:
    """Reject what torch's modules cannot compute; warn about what they cannot train with."""
    from keras_seq import layers

    cell = layer.cell
    if type(layer) is not type(first) or layer.units != first.units or (
        layer.num_layers != first.num_layers or cell.use_bias != first.cell.use_bias
        # torch.nn.RNN has one nonlinearity for both directions
        or _activation_name(cell.activation) != _activation_name(first.cell.activation)
    ):
        raise ValueError(
            "Invalid value for argument `layer`. Expected both directions of the same type, "
            "units, num_layers, use_bias and activation. "
            f"Received: forward={_describe(first)}, backward={_describe(layer)}"
        )
    if not all(c.built for c in layer.cells):
        raise ValueError(
            "Invalid value for argument `layer`. Expected a built layer (call it once or "
            f"call `build`). Received: layer `{layer.name}` with unbuilt weights"
        )
    activation = _activation_name(cell.activation)
    expected = {"tanh", "relu"} if isinstance(layer, layers.SimpleRNN) else {"tanh"}
    problems = []
    if activation not in expected:
        problems.append(f"activation={activation!r}")
    if isinstance(layer, (layers.LSTM, layers.GRU)):
        gate = _activation_name(cell.recurrent_activation)
        if gate != "sigmoid":
            problems.append(f"recurrent_activation={gate!r}")
    if isinstance(layer, layers.LSTM) and not cell.is_standard:
        problems.append(f"peephole={cell.peephole}, coupled_gates={cell.coupled_gates}")
    if isinstance(layer, layers.GRU) and not cell.reset_after:
        problems.append("reset_after=False")
    if problems:
        raise ValueError(
            "Invalid value for argument `layer`. Expected the torch-compatible form "
            "(SimpleRNN: activation 'tanh' or 'relu'; LSTM: no peephole or coupled gates, "
            "'tanh' / 'sigmoid'; GRU: reset_after=True, 'tanh' / 'sigmoid'). "
            f"Received: layer `{layer.name}` with {', '.join(problems)}"
        )
    if cell.dropout > 0 or cell.recurrent_dropout > 0:
        warnings.warn(
            f"Layer `{layer.name}` has dropout={cell.dropout}, recurrent_dropout="
            f"{cell.recurrent_dropout}; torch recurrent modules have no such dropout, so the "
            "torch module computes the same inference function but trains without it.",
            stacklevel=3,
        )


def _cell_to_torch(cell, mode: str) -> dict[str, np.ndarray]:
    w_ih = _variable_numpy(cell.kernel).T  # [G*U, D]
    w_hh = _variable_numpy(cell.recurrent_kernel).T  # [G*U, U]
    bias = None if cell.bias is None else _variable_numpy(cell.bias)
    if mode == "GRU":
        order = _gru_order(cell.units)
        w_ih, w_hh = w_ih[order], w_hh[order]
        if bias is not None:
            b_ih, b_hh = bias[0][order], bias[1][order]
    elif bias is not None:
        b_ih, b_hh = bias, np.zeros_like(bias)
    result = {"weight_ih": w_ih, "weight_hh": w_hh}
    if bias is not None:
        result.update(bias_ih=b_ih, bias_hh=b_hh)
    return result


def _variable_numpy(variable) -> np.ndarray:
    value = np.asarray(variable.numpy())
    return value.astype(np.float32) if value.dtype.name == "bfloat16" else value
