"""API tests (in-process client) and an end-to-end test in real headless Chromium."""
from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from facedeid.web.app import Limits, create_app

ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "test-artifacts"


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(Limits(max_upload_bytes=2 * 1024 * 1024, max_pixels=4_000_000)))


@pytest.fixture(scope="module")
def photo(data) -> bytes:
    return (data / "group_photos" / "two_people.jpg").read_bytes()


def _req(**kw) -> dict:
    return {"X-Facedeid-Request": json.dumps(kw)}


def _decode(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def test_methods_lists_registry_with_controls(client):
    d = client.get("/api/methods").json()
    names = {m["name"] for m in d["methods"]}
    assert {"blur", "pixelate", "dp-pix"} <= names
    eps = next(p for m in d["methods"] if m["name"] == "dp-pix" for p in m["params"] if p["name"] == "epsilon")
    assert eps["type"] == "float" and eps["min"] < eps["default"] < eps["max"]


def test_detect_and_anonymize_with_a_face_left_alone(client, photo):
    faces = client.post("/api/detect", content=photo, headers=_req(detector="centerface")).json()["faces"]
    assert len(faces) >= 2
    keep = min(range(len(faces)), key=lambda i: faces[i]["box"][0])
    r = client.post("/api/anonymize", content=photo, headers=_req(method="pixelate", params={"n": "8"}, detector="centerface", skip=[keep]))
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["image"].startswith("data:image/jpeg;base64,") and d["extension"] == "jpg"
    out, orig = _decode(d["image"]).astype(int), np.asarray(Image.open(io.BytesIO(photo)).convert("RGB")).astype(int)
    assert out.shape == orig.shape
    for i, f in enumerate(faces):
        x0, y0, x1, y1 = (int(v) for v in f["box"])
        diff = np.abs(out[y0:y1, x0:x1] - orig[y0:y1, x0:x1]).mean()
        assert (diff < 4) if i == keep else (diff > 8), (i, diff)
    assert all(d["metrics"]["deidentified"]["dlib"]) and all(d["metrics"]["deidentified"]["mobilefacenet"])


@pytest.mark.parametrize("body,code", [(b"", 400), (b"not an image at all", 415), (b"x" * (3 * 1024 * 1024), 413)])
def test_bad_uploads(client, body, code):
    r = client.post("/api/anonymize", content=body, headers=_req(method="blur"))
    assert r.status_code == code and "detail" in r.json()


def test_bad_method_and_params(client, photo):
    assert client.post("/api/anonymize", content=photo, headers=_req(method="nope")).status_code == 400
    assert client.post("/api/anonymize", content=photo, headers=_req(method="blur", params={"r": "-3"})).status_code == 400
    assert client.post("/api/anonymize", content=photo, headers={"X-Facedeid-Request": "{oops"}).status_code == 400


def test_no_path_from_client_reaches_the_file_system(client, photo):
    names = {m["name"] for m in client.get("/api/methods").json()["methods"]}
    assert "adv-opom" not in names and not any(n.startswith("ksame") for n in names)
    r = client.post("/api/anonymize", content=photo, headers=_req(method="adv-opom", params={"mask": "/etc/passwd"}))
    assert r.status_code == 400
    for name in ("../app.py", "..%2Fapp.py", "index.html", "/etc/passwd"):
        assert client.get(f"/static/{name}").status_code == 404


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    import uvicorn

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(10)


def test_browser_end_to_end(server, data):
    """Real headless Chromium (Debian's /usr/bin/chromium): upload, anonymize, check, screenshot."""
    from playwright.sync_api import sync_playwright

    src = data / "lfw" / "images" / "George_W_Bush" / "George_W_Bush_0001.jpg"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server)
        page.wait_for_selector("#method option[value=pixelate]", state="attached")
        page.select_option("#method", "blur")
        page.set_input_files("#files", str(src))
        page.wait_for_function("document.getElementById('status').textContent.includes('face')")
        page.click("#run")
        page.wait_for_function("document.getElementById('status').textContent === 'done'", timeout=60000)
        url = page.get_attribute("#result", "src")
        page.screenshot(path=str(ARTIFACTS / "web_result.png"), full_page=True)
        table = page.locator("#metrics").inner_text()
        assert "identity distance (dlib" in table and "identity distance (mobilefacenet" in table and "SSIM" in table
        browser.close()
    out = _decode(url).astype(int)
    orig = np.asarray(Image.open(src).convert("RGB")).astype(int)
    diff = np.abs(out - orig).sum(-1)
    assert diff[100:150, 100:150].mean() > 10  # the face changed
    assert diff[:20].mean() < 3 and diff[:, :20].mean() < 3  # the border did not (JPEG re-encoding only)
    assert (ARTIFACTS / "web_result.png").stat().st_size > 10000


def test_video_job_progress_result_and_cancel(client, face_image, tmp_path):
    from tests.media.test_video import _face_clip

    clip = tmp_path / "c.mp4"
    _face_clip(clip, face_image[:248, :248], frames=10)
    body = clip.read_bytes()
    job = client.post("/api/video", content=body, headers=_req(method="pixelate")).json()
    assert job["frames"] == 10
    for _ in range(300):
        st = client.get(f"/api/video/{job['job']}").json()
        if st["status"] != "running":
            break
        time.sleep(0.1)
    assert st["status"] == "done" and st["done"] == 10
    r = client.get(f"/api/video/{job['job']}/result")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4" and len(r.content) > 1000
    assert client.get(f"/api/video/{job['job']}").status_code == 404  # gone after delivery
    # cancel: the job stops and its folder is removed
    job2 = client.post("/api/video", content=body, headers=_req(method="pixelate")).json()
    assert client.delete(f"/api/video/{job2['job']}").json()["status"] == "cancelled"
    import glob, tempfile

    time.sleep(3)
    assert not glob.glob(tempfile.gettempdir() + "/facedeid-web-*")
    assert client.post("/api/video", content=b"not a video", headers=_req(method="pixelate")).status_code == 415


def test_recover_endpoint_exact_and_decoy(client, face_image, tmp_path, monkeypatch):
    """A photo anonymized with identity-password:exact=true comes back exactly with the right
    password; a wrong password returns a different face (a decoy), not an error; no password → 400."""
    from facedeid.cli import main

    src = tmp_path / "in.png"
    Image.fromarray(face_image).save(src)
    out = tmp_path / "anon.png"
    monkeypatch.setenv("FACEDEID_PASSWORD", "web secret")
    assert main(["anonymize", str(src), "-o", str(out), "--method", "identity-password:exact=true"]) == 0
    body = out.read_bytes()
    r = client.post("/api/recover", content=body, headers=_req(password="web secret", level=5))
    assert r.status_code == 200, r.text
    assert np.array_equal(_decode(r.json()["image"]), face_image)
    r = client.post("/api/recover", content=body, headers=_req(password="wrong", level=5))
    assert r.status_code == 200
    decoy = _decode(r.json()["image"])
    assert not np.array_equal(decoy, face_image)
    assert client.post("/api/recover", content=body, headers=_req(level=5)).status_code == 400
