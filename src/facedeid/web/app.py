"""The web app: a page and a small JSON API. Images are processed in memory only.

Uploads are raw request bodies (read with a size limit, never spooled to disk); the request's
method and parameters (passwords included) travel in a JSON header, so they appear in no URL and no
access log. Nothing of an upload is kept after the response.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import shutil
import tempfile
import threading
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.background import BackgroundTask

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
# Parameters naming a server-side file: a method that has one is not offered on the page, so no
# path from the client reaches the file system.
PATH_PARAMS = ("mask", "labels", "path")


def _web_allowed(cls: type) -> bool:
    from ..methods.base import SetMethod

    names = {f.name for f in dataclasses.fields(cls.Params)}
    return not issubclass(cls, SetMethod) and not names & set(PATH_PARAMS)


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_video_bytes: int = 200 * 1024 * 1024
    max_video_frames: int = 20_000


class Cancelled(Exception):
    pass


@dataclass
class VideoJob:
    """A video being anonymized in a background thread, in its own temporary folder."""

    id: str
    folder: Path
    total: int
    done: int = 0
    status: str = "running"  # running, done, error, cancelled
    error: str = ""
    cancel: bool = False
    report: dict[str, Any] = dataclasses.field(default_factory=dict)

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


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
    """The registry as the page needs it: single-image methods without file parameters."""
    return [
        {"name": name, "kind": cls.kind, "reference": cls.reference, "summary": cls.summary, "params": _param_info(cls)}
        for name, cls in registry().items()
        if _web_allowed(cls)
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

    @app.post("/api/recover")
    async def api_recover(request: Request) -> JSONResponse:
        """Undo ``identity-password`` on an uploaded photo with the password (in the request header):
        exact when the photo carries its encrypted payload, else the rotation recovery; which one is
        not said (a wrong password yields a decoy face, Ch. 8.6.3)."""
        from ..recovery import recover_bytes

        opts = _options(request)
        password = str(opts.get("password", ""))
        if not password:
            raise HTTPException(400, "a password is required")
        try:
            level = int(opts.get("level", 5))
        except (TypeError, ValueError):
            raise HTTPException(400, "level must be an integer 0…9") from None
        data = await _read_body(request, limits)
        try:
            with lock:
                dec, rgb, _how = recover_bytes(data, password, level, opts.get("detector", DEFAULT_DETECTOR), "upload",
                                               max_pixels=limits.max_pixels)
        except FaceDeidError as exc:
            raise HTTPException(400 if exc.exit_code == 2 else 415, str(exc)) from None
        url, ext = _data_url(dec, rgb)
        return JSONResponse({"image": url, "ext": ext})

    jobs: dict[str, VideoJob] = {}

    @app.post("/api/video")
    async def api_video(request: Request) -> JSONResponse:
        opts = _options(request)
        method = _method(opts)
        job = _start_video(await _read_body(request, dataclasses.replace(limits, max_upload_bytes=limits.max_video_bytes)), opts, method, limits, lock)
        jobs[job.id] = job
        return JSONResponse({"job": job.id, "frames": job.total})

    @app.get("/api/video/{job_id}")
    def api_video_status(job_id: str) -> JSONResponse:
        job = _job(jobs, job_id)
        return JSONResponse({"status": job.status, "done": job.done, "total": job.total, "error": job.error,
                             "uncertain_frames": len(job.report.get("uncertain_frames", [])), "tracks": job.report.get("tracks")})

    @app.get("/api/video/{job_id}/result")
    def api_video_result(job_id: str) -> FileResponse:
        job = _job(jobs, job_id)
        if job.status != "done":
            raise HTTPException(409, f"job is {job.status}")
        jobs.pop(job_id, None)
        return FileResponse(job.folder / "out.mp4", media_type="video/mp4", filename="anonymized.mp4", background=BackgroundTask(job.cleanup))

    @app.delete("/api/video/{job_id}")
    def api_video_cancel(job_id: str) -> JSONResponse:
        job = jobs.pop(job_id, None)
        if job is None:
            raise HTTPException(404, "no such job")
        job.cancel = True
        if job.status != "running":
            job.cleanup()
        return JSONResponse({"status": "cancelled"})

    return app


def _job(jobs: dict[str, VideoJob], job_id: str) -> VideoJob:
    if job_id not in jobs:
        raise HTTPException(404, "no such job")
    return jobs[job_id]


def _method(opts: dict[str, Any]):
    params = {str(k): str(v) for k, v in (opts.get("params") or {}).items()}
    name = str(opts.get("method", "pixelate")).partition(":")[0]
    if name in registry() and not _web_allowed(registry()[name]):
        raise HTTPException(400, f"method {name} is not available on the web page")
    try:
        return resolve_method(str(opts.get("method", "pixelate")), params)
    except BadArguments as exc:
        raise HTTPException(400, str(exc)) from None


def _start_video(data: bytes, opts: dict[str, Any], method, limits: Limits, lock: threading.Lock) -> VideoJob:
    """Write the upload into a private temporary folder, check it, and process it in a thread.

    The folder (upload and result) is removed when the result is fetched, on error and on cancel.
    """
    from ..media.video import probe

    folder = Path(tempfile.mkdtemp(prefix="facedeid-web-"))
    src = folder / "in.video"
    src.write_bytes(data)
    try:
        info = probe(src)
    except FaceDeidError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise HTTPException(415, str(exc).replace(str(src), "upload")) from None
    if info.frames > limits.max_video_frames or info.width * info.height > limits.max_pixels:
        shutil.rmtree(folder, ignore_errors=True)
        raise HTTPException(413, "video too long or too large")
    job = VideoJob(secrets.token_urlsafe(12), folder, info.frames)
    threading.Thread(target=_run_video, args=(job, src, method, str(opts.get("detector", DEFAULT_DETECTOR)), lock), daemon=True).start()
    return job


def _run_video(job: VideoJob, src: Path, method, detector: str, lock: threading.Lock) -> None:
    from ..video_pipeline import anonymize_video

    def progress(i: int) -> None:
        job.done = i + 1
        if job.cancel:
            raise Cancelled()

    try:
        with lock:
            rep = anonymize_video(src, job.folder / "out.mp4", method, detector, on_frame=progress)
        job.report = {"uncertain_frames": rep.uncertain_frames, "tracks": rep.tracks}
        job.status = "done"
    except Cancelled:
        job.status = "cancelled"
    except FaceDeidError as exc:
        job.status, job.error = "error", str(exc).replace(str(src), "upload")
    except Exception as exc:  # noqa: BLE001 - reported to the page, folder removed
        job.status, job.error = "error", f"processing failed: {type(exc).__name__}"
    finally:
        src.unlink(missing_ok=True)
        if job.status != "done":
            job.cleanup()


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
    skip = {int(i) for i in opts.get("skip", [])}
    method = _method(opts)
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
