"""The method interface, parameter dataclasses and the one registry used by CLI, API and benchmark."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from ..errors import BadArguments
from ..faces.masks import REGIONS, FaceRegion, composite, face_region
from ..faces.types import Face
from ..privacy.randomness import PrivacyRandom


@dataclass
class Context:
    """What a method may use besides the image: the privacy randomness and a report to fill."""

    rng: PrivacyRandom = field(default_factory=PrivacyRandom)
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodOutput:
    image: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Params:
    """Base of every method's parameters (frozen; defaults follow the book)."""


class Method:
    """A de-identification method for single images.

    Subclasses set ``name`` (registry key), ``reference`` (book section / equation), ``summary``,
    ``kind`` (``anonymization``: irreversible, or ``pseudonymization``: recoverable with a key,
    GDPR Art. 4(5)) and ``Params``, and implement :meth:`apply`.
    """

    name: ClassVar[str]
    reference: ClassVar[str]
    summary: ClassVar[str]
    kind: ClassVar[str] = "anonymization"
    Params: ClassVar[type[Params]]

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def apply(self, image: np.ndarray, faces: Sequence[Face], ctx: Context) -> MethodOutput:
        raise NotImplementedError

    def anonymize_video_file(self, src: Path, dst: Path, detector: str, detect_every: int, quality: int,
                             report_path: Path | None) -> dict[str, Any] | None:
        """A method that must see a whole video (not frame by frame) processes it here and returns its
        report (``frames_with_faces``, ``uncertain_frames``, ``tracks``); None (the default) lets the
        pipeline run :meth:`apply` on every frame through the tracker."""
        return None

    def spec(self) -> str:
        """``name:key=value,...`` — enough to re-create this method."""
        vals = ",".join(f"{k}={v}" for k, v in dataclasses.asdict(self.params).items())
        return f"{self.name}:{vals}" if vals else self.name


class SetMethod(Method):
    """A method over a *set* of images (k-Same family): each output depends on several inputs.

    ``apply_set`` receives every image with its faces and returns one output per image. Single-image
    ``apply`` is refused: these methods have no meaning for one photo alone.
    """

    def apply(self, image: np.ndarray, faces: Sequence[Face], ctx: Context) -> MethodOutput:
        raise BadArguments(f"{self.name} works on a set of images: use `facedeid anonymize-set`")

    def apply_set(self, images: Sequence[np.ndarray], faces: Sequence[Sequence[Face]], ctx: Context) -> list[MethodOutput]:
        raise NotImplementedError


@dataclass(frozen=True)
class RegionParams(Params):
    """Where a region method acts: ``region`` in ellipse/box/hull, grown by ``margin`` (fraction of
    the face size), blended over a ``feather`` band outside the region (fraction of the face size)."""

    region: str = "ellipse"
    margin: float = 0.1
    feather: float = 0.08


class RegionMethod(Method):
    """A method that replaces each face's region by a transformed version of the region's ROI."""

    needs_68: ClassVar[bool] = False

    def apply(self, image: np.ndarray, faces: Sequence[Face], ctx: Context) -> MethodOutput:
        out = image.copy()
        p: RegionParams = self.params  # type: ignore[assignment]
        for face in faces:
            region = face_region(face, image.shape, p.region, p.margin, p.feather)
            replacement = self.transform(image[region.slices], region, face, ctx)
            composite(out, replacement, region)
        return MethodOutput(out)

    def transform(self, roi: np.ndarray, region: FaceRegion, face: Face, ctx: Context) -> np.ndarray:
        """Return the ROI's replacement (same shape, any numeric dtype in 0..255)."""
        raise NotImplementedError


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a finished method to the registry under ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"method {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Method]]:
    from . import load_all  # noqa: F401  (imports every method module once)

    return dict(sorted(_REGISTRY.items()))


def _coerce(value: str, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if typ is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise BadArguments(f"parameter {key}: expected true/false, got {value!r}")
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value.lower() in ("none", ""):
            return None
        return _coerce(value, args[0], key)
    try:
        return typ(value)
    except (TypeError, ValueError):
        raise BadArguments(f"parameter {key}: cannot read {value!r} as {getattr(typ, '__name__', typ)}") from None


def make_params(cls: type[Method], values: dict[str, Any] | None) -> Params:
    """Build ``cls.Params`` from strings or values, rejecting unknown keys and bad values."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls.Params)
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise BadArguments(f"method {cls.name}: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(sorted(fields))})")
    kwargs = {k: _coerce(v, hints[k], k) if isinstance(v, str) else v for k, v in values.items()}
    try:
        params = cls.Params(**kwargs)
    except (TypeError, ValueError) as exc:
        raise BadArguments(f"method {cls.name}: {exc}") from None
    validate = getattr(params, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:
            raise BadArguments(f"method {cls.name}: {exc}") from None
    if isinstance(params, RegionParams) and params.region not in REGIONS:
        raise BadArguments(f"method {cls.name}: region must be one of {', '.join(REGIONS)}")
    return params


def get_method(name: str, params: dict[str, Any] | None = None) -> Method:
    """Instantiate a registered method by name with parameters (strings are parsed)."""
    reg = registry()
    if name not in reg:
        raise BadArguments(f"unknown method {name!r} (known: {', '.join(reg)})")
    cls = reg[name]
    return cls(make_params(cls, params))


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``blur:r=5,region=box`` → (``blur``, {"r": "5", "region": "box"})."""
    name, _, rest = spec.partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise BadArguments(f"bad parameter {item!r} in {spec!r}: use key=value")
        params[key.strip()] = value.strip()
    return name.strip(), params


def describe(cls: type[Method]) -> dict[str, Any]:
    """What ``facedeid methods`` prints for one method."""
    return {
        "name": cls.name,
        "kind": cls.kind,
        "reference": cls.reference,
        "summary": cls.summary,
        "params": {f.name: f.default for f in dataclasses.fields(cls.Params)},
    }
