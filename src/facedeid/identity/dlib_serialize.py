"""A reader for dlib's binary serialization format (``dlib/serialize.h``) and its DNN files.

Only reading is supported, and only what dlib's face recognition ResNet
(``dlib_face_recognition_resnet_model_v1.dat``) is made of. Primitive encodings:

* integers: one control byte (bit 7 = sign, low 4 bits = byte count) then the magnitude, little-endian;
* strings: the length (an integer) then the bytes;
* floats: a mantissa integer and an exponent integer, value = m·2^e (exponents 32000/32001/32002 mean
  +inf/−inf/NaN);
* bools: the ASCII characters ``'1'`` or ``'0'``;
* tensors: version 2, then n, k, nr, nc, then n·k·nr·nc raw little-endian float32 values;
* alias tensors (views into a layer's parameter tensor): version 1, then n, k, nr, nc.

A DNN is a chain of nested layers. Each ``add_layer`` (version 2) writes its version, its sub-network,
then its own layer and some training state; the innermost one (version 3) holds the input layer instead of
a sub-network. ``add_tag_layer`` and ``add_skip_layer`` (version 1) write only their version and sub-network,
so they can't be told apart from the bytes: the architecture says which is which. The loss layer writes its
own data before its sub-network.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_SPECIAL_FLOATS = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}


class DlibFormatError(ValueError):
    """The bytes are not what dlib's serialization of the expected object would be."""


class Reader:
    """Sequential reader over the bytes of one dlib-serialized object."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of data at byte {self.pos} (wanted {n} more)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def integer(self) -> int:
        """A signed or unsigned integer of any width."""
        control = self._take(1)[0]
        if control & 0x70:
            raise DlibFormatError(f"bad integer control byte {control:#04x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(control & 0x0F), "little")
        return -value if control & 0x80 else value

    def string(self) -> str:
        """A ``std::string`` (or C string literal)."""
        return self._take(self.integer()).decode("latin-1")

    def real(self) -> float:
        """A ``float`` or ``double`` stored as mantissa and binary exponent."""
        mantissa, exponent = self.integer(), self.integer()
        if exponent in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[exponent]
        return math.ldexp(mantissa, exponent)

    def boolean(self) -> bool:
        """A ``bool`` stored as the character ``'1'`` or ``'0'``."""
        char = self._take(1)
        if char not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {char!r} at byte {self.pos - 1}")
        return char == b"1"

    def tensor(self) -> np.ndarray:
        """A ``resizable_tensor`` as a float32 array of shape (n, k, nr, nc)."""
        self.expect_version(2, "tensor")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: only the shape (n, k, nr, nc) of a view; its offset is implied by the layer."""
        self.expect_version(1, "alias_tensor")
        n, k, nr, nc = (self.integer() for _ in range(4))
        return (n, k, nr, nc)

    def expect_version(self, version: int, what: str) -> None:
        found = self.integer()
        if found != version:
            raise DlibFormatError(f"{what}: expected version {version}, found {found} at byte {self.pos}")

    def expect_string(self, expected: str) -> None:
        found = self.string()
        if found != expected:
            raise DlibFormatError(f"expected {expected!r}, found {found!r} at byte {self.pos}")

    @property
    def at_end(self) -> bool:
        return self.pos == len(self.data)


@dataclass(frozen=True)
class Layer:
    """One layer of a dlib DNN: ``kind`` is its serialization tag (``con_4``, ``relu_`` …, or ``tag``
    for a tag/skip marker) and ``fields`` its stored values, named as in dlib's source."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DnnFile:
    """A deserialized dlib DNN: the loss layer, the input layer and the layers from input to output."""

    loss: Layer
    input: Layer
    layers: list[Layer]


def _read_multipliers(r: Reader, fields: dict[str, Any]) -> None:
    for name in ("learning_rate_multiplier", "weight_decay_multiplier",
                 "bias_learning_rate_multiplier", "bias_weight_decay_multiplier"):
        fields[name] = r.real()


def _read_con(r: Reader) -> dict[str, Any]:
    fields: dict[str, Any] = {"params": r.tensor()}
    for name in ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"):
        fields[name] = r.integer()
    fields["filters"] = r.alias_tensor()
    fields["biases"] = r.alias_tensor()
    _read_multipliers(r, fields)
    return fields


def _read_affine(r: Reader) -> dict[str, Any]:
    return {"params": r.tensor(), "gamma": r.alias_tensor(), "beta": r.alias_tensor(), "mode": r.integer()}


def _read_pool(r: Reader) -> dict[str, Any]:
    return {name: r.integer() for name in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")}


def _read_fc(r: Reader) -> dict[str, Any]:
    fields: dict[str, Any] = {"num_outputs": r.integer(), "num_inputs": r.integer(), "params": r.tensor()}
    fields["weights"] = r.alias_tensor()
    fields["biases"] = r.alias_tensor()
    fields["bias_mode"] = r.integer()
    _read_multipliers(r, fields)
    return fields


def _read_nothing(r: Reader) -> dict[str, Any]:
    return {}


_LAYER_READERS: dict[str, Callable[[Reader], dict[str, Any]]] = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": _read_nothing,
    "add_prev_": _read_nothing,
    "max_pool_2": _read_pool,
    "avg_pool_2": _read_pool,
    "fc_2": _read_fc,
}


def read_layer(r: Reader) -> Layer:
    """A computational layer (``con_``, ``affine_``, ``relu_``, ``add_prev_``, pooling or ``fc_``)."""
    kind = r.string()
    if kind not in _LAYER_READERS:
        raise DlibFormatError(f"unsupported dlib layer {kind!r} at byte {r.pos}")
    return Layer(kind, _LAYER_READERS[kind](r))


def read_input_rgb_image_sized(r: Reader) -> Layer:
    """``input_rgb_image_sized``: the channel means subtracted from the pixels and the image size."""
    r.expect_string("input_rgb_image_sized")
    fields: dict[str, Any] = {name: r.real() for name in ("avg_red", "avg_green", "avg_blue")}
    fields.update(nr=r.integer(), nc=r.integer())
    return Layer("input_rgb_image_sized", fields)


def read_loss_metric(r: Reader) -> Layer:
    """``loss_metric_``: the training margin and distance threshold."""
    r.expect_string("loss_metric_2")
    return Layer("loss_metric_2", {"margin": r.real(), "distance_threshold": r.real()})


def _skip_training_state(r: Reader, tensors: int) -> None:
    for _ in range(3):
        r.boolean()
    for _ in range(tensors):
        r.tensor()


def read_layer_chain(r: Reader) -> tuple[Layer, list[Layer]]:
    """The nested ``add_layer``/``add_tag_layer``/``add_skip_layer`` chain below the loss layer.

    Returns the input layer and the layers ordered from the input outward; tag and skip layers appear as
    ``Layer("tag")`` markers.
    """
    versions: list[int] = []
    while not versions or versions[-1] != 3:
        version = r.integer()
        if version not in (1, 2, 3):
            raise DlibFormatError(f"unexpected layer version {version} at byte {r.pos}")
        versions.append(version)
    input_layer = read_input_rgb_image_sized(r)
    layers = [read_layer(r)]
    _skip_training_state(r, tensors=3)
    r.integer()  # the sample expansion factor of the input-side add_layer
    for version in reversed(versions[:-1]):
        if version == 1:
            layers.append(Layer("tag"))
            continue
        layers.append(read_layer(r))
        _skip_training_state(r, tensors=3)
    return input_layer, layers


def read_dnn(path: str | Path) -> DnnFile:
    """Deserialize a dlib DNN file whose loss is ``loss_metric`` and input ``input_rgb_image_sized``."""
    r = Reader(Path(path).read_bytes())
    r.expect_version(1, "add_loss_layer")
    loss = read_loss_metric(r)
    input_layer, layers = read_layer_chain(r)
    if not r.at_end:
        raise DlibFormatError(f"{len(r.data) - r.pos} trailing bytes after the network")
    return DnnFile(loss=loss, input=input_layer, layers=layers)


def alias_view(params: np.ndarray, shape: tuple[int, int, int, int], offset: int) -> np.ndarray:
    """The part of a layer's flat parameter tensor that an alias tensor of ``shape`` at ``offset`` names."""
    size = int(np.prod(shape))
    flat = params.reshape(-1)
    if offset + size > flat.size:
        raise DlibFormatError(f"alias {shape} at offset {offset} exceeds {flat.size} parameters")
    return flat[offset : offset + size].reshape(shape)
