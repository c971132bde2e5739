"""The web app: a page and a small JSON API. Images are processed in memory only.

Uploads are raw request bodies (read with a size limit, never spooled to disk); the request's
method and parameters (passwords included) travel in a JSON header, so they appear in no URL and no
access log. Nothing of an upload is kept after the response.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import threading
import typing
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..errors import BadArguments, FaceDeidError
from ..faces.detect import DEFAULT_DETECTOR, backends, detect
from ..identity.recognizers import DlibRecognizer, distance
from ..media.images import DecodedImage, decode_image, encode_image
from ..methods.base import registry
from ..metrics.quality import psnr, ssim
from ..pipeline import anonymize, resolve_method

MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff"}
# Slider ranges for well-known parameter names (others get a plain number field).
HINTS: dict[str, tuple[float, float, float]] = {
    "epsilon": (0.01, 50.0, 0.01), "r": (1, 40, 0.5), "sigma": (0, 80, 1), "n": (2, 32, 1), "b": (2, 64, 1), "m": (1, 256, 1),
    "k": (1, 64, 1), "margin": (0, 0.5, 0.01), "feather": (0, 0.3, 0.01), "eps": (1, 32, 1), "strength": (0, 3, 0.05),
    "theta": (0, 180, 1), "level": (0, 9, 1), "delta": (1e-9, 0.01, 1e-9), "blur": (0, 20, 0.5),
}
SECRET_NAMES = ("password", "key", "ukey")


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 40_000_000


def _param_info(cls: type) -> list[dict[str, Any]]:
    hints = typing.get_type_hints(cls.Params)
    out = []
    for f in dataclasses.fields(cls.Params):
        typ = hints[f.name]
        kind = {bool: "bool", int: "int", float: "float"}.get(typ, "str")
        info: dict[str, Any] = {"name": f.name, "type": kind, "default": f.default}
        if f.name in HINTS and kind in ("int", "float"):
            info["min"], info["max"], info["step"] = HINTS[f.name]
        if f.name == "region":
            info["choices"] = ["ellipse", "box", "hull"]
        info["secret"] = any(s in f.name for s in SECRET_NAMES)
        out.append(info)
    return out


def methods_payload() -> list[dict[str, Any]]:
    """The registry as the page needs it: image methods only (set methods need several photos)."""
    from ..methods.base import SetMethod

    return [
        {"name": name, "kind": cls.kind, "reference": cls.reference, "summary": cls.summary, "params": _param_info(cls)}
        for name, cls in registry().items()
        if not issubclass(cls, SetMethod)
    ]


async def _read_body(request: Request, limits: Limits) -> bytes:
    """The raw upload, refused past the size limit while it streams in."""
    declared = request.headers.get("content-length")
    if declared and int(declared) > limits.max_upload_bytes:
        raise HTTPException(413, f"upload larger than {limits.max_upload_bytes // (1024 * 1024)} MB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_upload_bytes:
            raise HTTPException(413, f"upload larger than {limits.max_upload_bytes // (1024 * 1024)} MB")
        chunks.append(chunk)
    if not size:
        raise HTTPException(400, "empty upload")
    return b"".join(chunks)


def _options(request: Request) -> dict[str, Any]:
    raw = request.headers.get("x-facedeid-request", "{}")
    try:
        opts = json.loads(raw)
    except json.JSONDecodeError:
        raise HTTPException(400, "bad X-Facedeid-Request header (JSON expected)") from None
    if not isinstance(opts, dict):
        raise HTTPException(400, "X-Facedeid-Request must be a JSON object")
    return opts


def _decode(data: bytes, limits: Limits) -> DecodedImage:
    try:
        return decode_image(data, "upload", max_pixels=limits.max_pixels)
    except FaceDeidError as exc:
        raise HTTPException(415, str(exc)) from None


def _data_url(dec: DecodedImage, rgb: np.ndarray) -> tuple[str, str]:
    payload = encode_image(dec, rgb)
    fmt = dec.format if dec.format in MIME else "PNG"
    return f"data:{MIME[fmt]};base64," + base64.b64encode(payload).decode(), fmt.lower().replace("jpeg", "jpg")


def create_app(limits: Limits | None = None) -> FastAPI:
    limits = limits or Limits()
    app = FastAPI(title="facedeid", docs_url=None, redoc_url=None, openapi_url=None)
    lock = threading.Lock()  # one image at a time: the models use every core already
    recognizers = _recognizers()

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return resources.files(__package__).joinpath("static/index.html").read_text()

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in ("app.js", "style.css"):
            raise HTTPException(404, "not found")
        body = resources.files(__package__).joinpath("static", name).read_bytes()
        return Response(body, media_type="text/javascript" if name.endswith(".js") else "text/css")

    @app.get("/api/methods")
    def api_methods() -> JSONResponse:
        return JSONResponse({"methods": methods_payload(), "detectors": [*sorted(backends()), "union"], "default_detector": DEFAULT_DETECTOR,
                             "limits": dataclasses.asdict(limits)})

    @app.post("/api/detect")
    async def api_detect(request: Request) -> JSONResponse:
        opts = _options(request)
        dec = _decode(await _read_body(request, limits), limits)
        with lock:
            faces = _detect(dec.rgb, opts.get("detector", DEFAULT_DETECTOR))
        return JSONResponse({"width": dec.size[0], "height": dec.size[1], "faces": [_face_json(f) for f in faces]})

    @app.post("/api/anonymize")
    async def api_anonymize(request: Request) -> JSONResponse:
        opts = _options(request)
        dec = _decode(await _read_body(request, limits), limits)
        with lock:
            return JSONResponse(_anonymize(dec, opts, recognizers))

    return app


def _recognizers() -> list:
    """dlib, plus MobileFaceNet (evaluation only) when its model is in the cache."""
    recs: list = [DlibRecognizer()]
    try:
        from ..identity.mobilefacenet import MobileFaceNetRecognizer

        recs.append(MobileFaceNetRecognizer())
    except FaceDeidError:
        pass
    return recs


def _detect(rgb: np.ndarray, detector: str) -> list:
    try:
        return detect(rgb, detector)
    except BadArguments as exc:
        raise HTTPException(400, str(exc)) from None


def _face_json(f) -> dict[str, Any]:
    return {"box": f.box.to_list(), "score": round(float(f.score), 3), "detector": f.detector}


def _anonymize(dec: DecodedImage, opts: dict[str, Any], recognizers: list) -> dict[str, Any]:
    detector = str(opts.get("detector", DEFAULT_DETECTOR))
    params = {str(k): str(v) for k, v in (opts.get("params") or {}).items()}
    skip = {int(i) for i in opts.get("skip", [])}
    try:
        method = resolve_method(str(opts.get("method", "pixelate")), params)
    except BadArguments as exc:
        raise HTTPException(400, str(exc)) from None
    faces = _detect(dec.rgb, detector)
    res = anonymize(dec.rgb, method, faces=faces, skip=skip)
    done = [f for i, f in enumerate(faces) if i not in skip]
    dists = {r.name: distance(r.embed(dec.rgb, done), r.embed(res.image, done), r.metric) if done else np.zeros(0) for r in recognizers}
    after = detect(res.image, detector)
    url, ext = _data_url(dec, res.image)
    return {
        "image": url,
        "extension": ext,
        "faces": [dict(_face_json(f), anonymized=i not in skip) for i, f in enumerate(faces)],
        "method": method.spec() if not any(s in method.spec() for s in SECRET_NAMES) else method.name,
        "metrics": {
            "identity_distance": {r.name: [round(float(d), 4) for d in dists[r.name]] for r in recognizers},
            "deidentified": {r.name: [bool(d > r.threshold) for d in dists[r.name]] for r in recognizers},
            "threshold": {r.name: r.threshold for r in recognizers},
            "ssim": round(ssim(dec.rgb, res.image), 4),
            "psnr": None if not np.isfinite(p := psnr(dec.rgb, res.image)) else round(p, 2),
            "faces_detected_after": len(after),
            "detector": detector,
        },
    }
