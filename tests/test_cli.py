import io
import json
import shutil

import numpy as np
from PIL import Image

from facedeid.cli import main
from facedeid.errors import NoFaceFound, UnsupportedMedia, BadArguments


def _copy_faces(data, dst, n=2):
    src = data / "lfw" / "images" / "George_W_Bush"
    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(src.glob("*.jpg"))[:n]
    for f in files:
        shutil.copy(f, dst / f.name)
    return files


def test_anonymize_folder_mirrors_tree_and_keeps_inputs(data, tmp_path, capsys):
    inp = tmp_path / "in"
    _copy_faces(data, inp / "a", 2)
    _copy_faces(data, inp / "b" / "c", 1)
    before = {p: p.read_bytes() for p in inp.rglob("*.jpg")}
    out = inp / "anon"  # output inside the input folder: must not be re-processed
    assert main(["anonymize", str(inp), "-o", str(out), "--method", "pixelate", "-q"]) == 0
    produced = sorted(p.relative_to(out) for p in out.rglob("*.jpg"))
    assert [str(p) for p in produced] == ["a/George_W_Bush_0001.jpg", "a/George_W_Bush_0002.jpg", "b/c/George_W_Bush_0001.jpg"]
    assert {p: p.read_bytes() for p in inp.rglob("*.jpg") if out not in p.parents} == before
    # a second run does not pick up its own outputs
    assert main(["anonymize", str(inp), "-o", str(out), "--method", "pixelate", "-q"]) == 0
    assert len(list(out.rglob("*.jpg"))) == 3
    for p in out.rglob("*.jpg"):
        img = Image.open(p)
        assert img.size == (250, 250) and img.format == "JPEG" and img.mode == "RGB"


def test_single_file_to_file_with_params(data, tmp_path):
    src = data / "lfw" / "images" / "George_W_Bush" / "George_W_Bush_0001.jpg"
    dst = tmp_path / "x.jpg"
    assert main(["anonymize", str(src), "-o", str(dst), "--method", "blur", "--param", "r=20"]) == 0
    a, b = np.asarray(Image.open(src)), np.asarray(Image.open(dst))
    assert a.shape == b.shape and np.abs(a.astype(int) - b)[100:150, 100:150].mean() > 5


def test_refuses_to_overwrite_input(data, tmp_path, capsys):
    src = tmp_path / "face.jpg"
    shutil.copy(data / "lfw" / "images" / "George_W_Bush" / "George_W_Bush_0001.jpg", src)
    before = src.read_bytes()
    code = main(["anonymize", str(src), "-o", str(src)])
    assert code != 0 and src.read_bytes() == before
    assert "overwrite" in capsys.readouterr().err


def test_bad_inputs_get_exit_codes_and_others_still_run(data, tmp_path, capsys):
    inp = tmp_path / "in"
    _copy_faces(data, inp, 1)
    (inp / "empty.jpg").write_bytes(b"")
    (inp / "text.jpg").write_text("not really a jpeg\n")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(buf, format="JPEG")
    (inp / "trunc.jpg").write_bytes(buf.getvalue()[:300])
    from tests.media.test_images import _png_header_only

    (inp / "bomb.png").write_bytes(_png_header_only(30000, 30000))
    code = main(["anonymize", str(inp), "-o", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == UnsupportedMedia.exit_code
    assert (tmp_path / "out" / "George_W_Bush_0001.jpg").exists()
    assert "too large" in err
    for name in ("empty.jpg", "text.jpg", "trunc.jpg", "bomb.png"):
        assert sum(name in line for line in err.splitlines()) == 1
        assert not (tmp_path / "out" / name).exists()


def test_no_face_policy(tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(blank)
    assert main(["anonymize", str(blank), "-o", str(tmp_path / "o1.png")]) == 0
    assert "no face" in capsys.readouterr().err and (tmp_path / "o1.png").exists()
    assert main(["anonymize", str(blank), "-o", str(tmp_path / "o2.png"), "--on-no-face", "fail"]) == NoFaceFound.exit_code
    assert not (tmp_path / "o2.png").exists()


def test_bad_arguments(tmp_path, data):
    src = data / "lfw" / "images" / "George_W_Bush" / "George_W_Bush_0001.jpg"
    assert main(["anonymize", str(src), "-o", str(tmp_path / "o.jpg"), "--method", "nope"]) == BadArguments.exit_code
    assert main(["anonymize", str(src), "-o", str(tmp_path / "o.jpg"), "--param", "oops"]) == BadArguments.exit_code
    assert main(["anonymize"]) == 2


def test_methods_and_detect_json(data, capsys):
    assert main(["methods", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    names = {i["name"] for i in infos}
    assert {"blur", "pixelate", "dp-pix"} <= names and all(i["reference"] for i in infos)
    src = data / "lfw" / "images" / "George_W_Bush" / "George_W_Bush_0001.jpg"
    assert main(["detect", str(src), "--json"]) == 0
    faces = json.loads(capsys.readouterr().out)["faces"]
    assert len(faces) >= 1 and len(faces[0]["landmarks5"]) == 5


def test_rgba_png_keeps_alpha(face_image, tmp_path):
    alpha = np.tile(np.linspace(0, 255, 250).astype(np.uint8), (250, 1))
    src = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([face_image, alpha]), "RGBA").save(src)
    assert main(["anonymize", str(src), "-o", str(tmp_path / "out.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (250, 250, 4) and np.array_equal(out[..., 3], alpha)
    assert np.abs(out[..., :3].astype(int) - face_image).sum() > 0


def test_demo(tmp_path):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    m = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert m["faces"] and all(m["deidentified_dlib"])
    assert (tmp_path / "demo" / "side_by_side.png").exists()
