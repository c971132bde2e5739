"""IdentityMask on a short real clip (issue 8, items 4–5): first-frame edit carried by motion, sealed
edit payload for recovery, rotation path for a wrong key, the image method."""
from __future__ import annotations

import math

import numpy as np
import pytest

from facedeid.errors import BadArguments
from facedeid.faces.detect import detect
from facedeid.identity.recognizers import DlibRecognizer, distance
from facedeid.media.video import probe, read_frames
from facedeid.methods import Context, get_method
from facedeid.video_mask import _PayloadReader, mask_video, recover_video

CLIP = "lp_driving_d19.mp4"  # 480×480, 30 fps, AAC audio, one face
N = 10
KEY = "correct horse 42"
TAU = 0.6


def _frames(path, n=N):
    return [f for i, _, f in read_frames(path) if i < n]


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vm")
    src = data / "videos" / CLIP
    masked, right, wrong = tmp / "masked.mp4", tmp / "right.mp4", tmp / "wrong.mp4"
    rep = mask_video(src, masked, KEY, max_frames=N)
    rr = recover_video(masked, right, KEY)
    rw = recover_video(masked, wrong, "a wrong key")
    frames = {k: _frames(p) for k, p in dict(orig=src, masked=masked, right=right, wrong=wrong).items()}
    faces = [max(detect(f, "centerface"), key=lambda f: f.box.area) for f in frames["orig"]]
    rec = DlibRecognizer()
    emb = {k: [rec.embed(f, [face])[0] for f, face in zip(v, faces)] for k, v in frames.items()}
    return dict(src=src, masked=masked, right=right, wrong=wrong, rep=rep, rr=rr, rw=rw, emb=emb, tmp=tmp)


def _d(runs, a, b, i):
    return float(distance(runs["emb"][a][i][None], runs["emb"][b][i][None], "euclidean")[0])


def test_output_keeps_size_fps_frames_audio(runs):
    src, out = probe(runs["src"]), probe(runs["masked"])
    assert (out.width, out.height, out.fps, out.frames) == (src.width, src.height, src.fps, N)
    assert bool(out.audio) == bool(src.audio)
    assert probe(runs["right"]).frames == N and bool(probe(runs["right"]).audio) == bool(src.audio)
    rep = runs["rep"]
    assert rep["frames"] == N and rep["frames_with_faces"] == N and not rep["failures"]
    assert len(rep["tracks"]) == 1 and rep["tracks"][0]["key_frame"] == 0
    assert rep["tracks"][0]["angle_deg"] == pytest.approx(60.0, abs=0.01)
    # one plan (the first frame), every later frame only carried by motion
    assert sum(bool(r.get("planned")) for fr in rep["per_frame"] for r in fr["faces"]) == 1
    assert KEY not in str(rep)


def test_masked_identity_changed_on_most_frames(runs):
    d = [_d(runs, "orig", "masked", i) for i in range(N)]
    assert np.mean(np.array(d) > TAU) >= 0.7, d


def test_right_key_recovers_through_the_payload(runs):
    assert runs["rr"]["how"] == "edit"
    d = [_d(runs, "orig", "right", i) for i in range(N)]
    assert d[0] < TAU and max(d) < TAU, d


def test_wrong_key_gives_another_identity(runs):
    assert runs["rw"]["how"] == "rotation"  # the payload does not open: the rotation path, no error
    to_masked = [_d(runs, "masked", "wrong", i) for i in range(N)]
    to_orig = [_d(runs, "orig", "wrong", i) for i in range(N)]
    assert to_masked[0] > TAU and np.mean(np.array(to_masked) > TAU) >= 0.7, to_masked
    right = np.mean([_d(runs, "orig", "right", i) for i in range(N)])
    assert min(to_orig) > 0.45 and np.mean(to_orig) > right + 0.3, to_orig  # no recovery with a wrong key


def test_wrong_key_is_past_the_threshold_from_the_original(runs):
    """The rotation path repels the origin estimates (not only the masked face), so a wrong key does
    not fall back towards the original identity."""
    to_orig = np.array([_d(runs, "orig", "wrong", i) for i in range(N)])
    assert to_orig[0] > TAU and to_orig.mean() > TAU and np.mean(to_orig > TAU) >= 0.9, to_orig
    assert all(t["refine"]["min_view_distance"] > 0.7 for t in runs["rw"]["tracks"]), runs["rw"]["tracks"]


def test_propagation_is_deterministic_given_the_key(runs):
    again = runs["tmp"] / "again.mp4"
    mask_video(runs["src"], again, KEY, max_frames=3)
    a = _PayloadReader(runs["tmp"] / "masked.mp4.facedeid-payload", KEY)
    b = _PayloadReader(runs["tmp"] / "again.mp4.facedeid-payload", KEY)
    assert np.array_equal(a.edits[0].d_frontal, b.edits[0].d_frontal)
    assert np.array_equal(a.edits[0].texture, b.edits[0].texture)
    for i in range(3):
        assert np.array_equal(a.by_frame[i][0][1], b.by_frame[i][0][1])


def test_refuses_empty_key_and_bad_theta(runs, tmp_path):
    with pytest.raises(BadArguments):
        mask_video(runs["src"], tmp_path / "x.mp4", "", max_frames=1)
    with pytest.raises(BadArguments):
        mask_video(runs["src"], tmp_path / "x.mp4", KEY, theta_deg=180, max_frames=1)
    with pytest.raises(BadArguments):
        get_method("identity-mask", {})
    m = get_method("identity-mask", {"key": "s3cret", "theta": "45"})
    assert m.kind == "pseudonymization" and "s3cret" not in m.spec()


def test_image_method_rotates_like_the_first_frame(runs, face_image):
    m = get_method("identity-mask", {"key": KEY})
    faces = detect(face_image, "centerface")
    res = m.apply(face_image, faces, Context())
    row = res.report["identity"][0]
    assert math.isclose(row["angle_deg"], 60.0, abs_tol=0.01)
    rec = DlibRecognizer()
    d = distance(rec.embed(face_image, faces[:1]), rec.embed(res.image, faces[:1]), "euclidean")[0]
    assert d > TAU


def test_unapply_edit_inverts_apply_edit(face_image):
    """The payload's inverse: same meshes, texture change subtracted, warp inverted (no codec here)."""
    from facedeid.model.core import load_model
    from facedeid.video_mask import motion_fit, plan_identity_edit, reference_for, theta_radians, unapply_edit

    model = load_model()
    face = detect(face_image, "centerface", with_68=True)[0]
    edit, _ = plan_identity_edit(model, face_image, face, reference_for(KEY, model.dim), theta_radians(60), None)
    fit = motion_fit(face.landmarks68, face_image.shape)
    masked = model.apply_edit(face_image, fit, edit).image
    back = unapply_edit(model, masked, fit, edit)
    x0, y0, x1, y1 = model.warp_roi(fit)
    before = np.abs(masked.astype(int) - face_image.astype(int))[y0:y1, x0:x1].mean()
    after = np.abs(back.astype(int) - face_image.astype(int))[y0:y1, x0:x1].mean()
    assert after < 0.35 * before and after < 3.0, (before, after)
    assert np.array_equal(back[:y0], face_image[:y0]) and np.array_equal(back[y1:], face_image[y1:])


def test_cli_anonymize_and_recover_a_video(runs):
    """`facedeid anonymize VIDEO --method identity-mask:key=…` goes through mask_video (sealed edit
    sidecar next to the output) and `facedeid recover VIDEO --key` brings the face back."""
    from facedeid.cli import main
    from facedeid.media.payload import sidecar_path

    src = runs["right"]  # a 10-frame clip of the original person
    out = runs["tmp"] / "cli_masked.mp4"
    back = runs["tmp"] / "cli_back.mp4"
    assert main(["anonymize", str(src), "-o", str(out), "--method", f"identity-mask:key={KEY}"]) == 0
    assert sidecar_path(out).is_file() and probe(out).frames == probe(src).frames
    assert main(["recover", str(out), "-o", str(back), "--key", KEY]) == 0
    rec = DlibRecognizer()
    a, b = _frames(src, 1)[0], _frames(back, 1)[0]
    face = max(detect(a, "centerface"), key=lambda f: f.box.area)
    assert float(np.linalg.norm(rec.embed(a, [face]) - rec.embed(b, [face]))) < TAU


def test_method_params_reach_the_video_path(runs, tmp_path):
    """``steps``/``suppress`` given to the registered method are what the video path uses (not
    dropped on the way to mask_video); the payload's inverse also restores the suppressed detail."""
    from facedeid.media.payload import sidecar_path

    src = runs["right"]  # a 10-frame clip of the original person
    outs, edits = {}, {}
    for sup in ("0", "1"):
        m = get_method("identity-mask", {"key": KEY, "steps": "0", "suppress": sup})
        outs[sup] = tmp_path / f"sup{sup}.mp4"
        rep = m.anonymize_video_file(src, outs[sup], "centerface", 1, 18, None)
        assert rep["tracks"] and "refine" not in rep["tracks"][0], rep["tracks"]  # steps=0: no refinement
        edits[sup] = _PayloadReader(sidecar_path(outs[sup]), KEY).edits[0].texture
    assert np.abs(edits["1"] - edits["0"]).mean() > 0.5  # the idiosyncratic detail was taken out
    back = tmp_path / "back.mp4"
    assert recover_video(outs["1"], back, KEY)["how"] == "edit"
    rec = DlibRecognizer()
    a, b = _frames(src, 1)[0], _frames(back, 1)[0]
    face = max(detect(a, "centerface"), key=lambda f: f.box.area)
    assert float(np.linalg.norm(rec.embed(a, [face]) - rec.embed(b, [face]))) < 0.25


def test_payload_inside_the_video_recovers_with_the_key_alone(runs, tmp_path):
    """``embed=True``: no sidecar; the sealed edit payload travels inside the MP4, so the video and the
    key alone recover the face; a wrong key still takes the rotation path; a .mkv output is refused."""
    from facedeid.media.payload import sidecar_path

    masked, back, wrong = tmp_path / "inside.mp4", tmp_path / "back.mp4", tmp_path / "wrong.mp4"
    rep = mask_video(runs["src"], masked, KEY, max_frames=N, embed=True)
    assert rep["payload"]["embedded"] and not sidecar_path(masked).exists()
    assert probe(masked).frames == N and bool(probe(masked).audio) == bool(probe(runs["src"]).audio)
    rr = recover_video(masked, back, KEY)
    assert rr["how"] == "edit" and "inside the video" in rr["payload"]["note"]
    assert recover_video(masked, wrong, "a wrong key")["how"] == "rotation"
    rec = DlibRecognizer()
    orig, got = _frames(runs["src"]), _frames(back)
    faces = [max(detect(f, "centerface"), key=lambda f: f.box.area) for f in orig]
    d = [float(np.linalg.norm(rec.embed(o, [f]) - rec.embed(g, [f]))) for o, g, f in zip(orig, got, faces)]
    assert max(d) < 0.25, d
    with pytest.raises(BadArguments):
        mask_video(runs["src"], tmp_path / "x.mkv", KEY, max_frames=1, embed=True)
    with pytest.raises(BadArguments):
        mask_video(runs["src"], tmp_path / "x.mp4", KEY, max_frames=1, embed=True, payload="none")


def test_cli_embed_then_recover_from_the_video_alone(runs, tmp_path):
    from facedeid.cli import main
    from facedeid.media.payload import sidecar_path

    out, back = tmp_path / "cli_inside.mp4", tmp_path / "cli_inside_back.mp4"
    assert main(["anonymize", str(runs["right"]), "-o", str(out), "--method", f"identity-mask:key={KEY},embed=true"]) == 0
    assert not sidecar_path(out).exists()
    assert main(["recover", str(out), "-o", str(back), "--key", KEY, "--reveal"]) == 0
    a, b = _frames(runs["right"], 1)[0], _frames(back, 1)[0]
    face = max(detect(a, "centerface"), key=lambda f: f.box.area)
    rec = DlibRecognizer()
    assert float(np.linalg.norm(rec.embed(a, [face]) - rec.embed(b, [face]))) < 0.25
