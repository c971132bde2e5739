"""`facedeid batch` with the local engine: same outputs as `anonymize`, ledger, resume, retries, refusals."""
from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from facedeid.batch import LEDGER_NAME, SUMMARY_NAME, run_batch
from facedeid.cli import main
from facedeid.errors import BadArguments, UnsupportedMedia

from .conftest import N_FACES, ledger_rows, output_files


def test_folder_run_mirrors_anonymize_and_skips_finished(faces_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(faces_dir), "-o", str(out), "--method", "pixelate", "--workers", "2", "-q"]) == 0
    ref = tmp_path / "ref"
    assert main(["anonymize", str(faces_dir), "-o", str(ref), "--method", "pixelate", "-q"]) == 0
    produced = output_files(out)
    assert len(produced) == N_FACES and produced == output_files(ref)  # the very same library path
    rows = ledger_rows(out)
    assert [r["key"] for r in rows] == sorted(produced)
    assert all(r["status"] == "done" and r["outcome"] == "ok" and r["attempts"] == 1 and r["faces"] >= 1 for r in rows)
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["totals"]["items"] == N_FACES and summary["totals"]["done"] == N_FACES
    assert summary["totals"]["faces"] == sum(r["faces"] for r in rows) and summary["run"]["items_per_s"] > 0
    assert "items 10: done 10" in capsys.readouterr().out
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    s = run_batch(faces_dir, out, "pixelate")  # rerun: everything is skipped, nothing rewritten
    assert (s.run.skipped, s.run.finished) == (N_FACES, 0)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == mtimes
    assert not list(out.rglob(".facedeid-*.part"))


def test_resume_after_stopping_early(faces_dir, tmp_path):
    out = tmp_path / "out"
    first = run_batch(faces_dir, out, "mask", workers=1, limit=4)
    assert (first.totals["done"], first.totals["pending"]) == (4, N_FACES - 4)
    done_before = {r["key"]: r["updated"] for r in ledger_rows(out) if r["status"] == "done"}
    second = run_batch(faces_dir, out, "mask", workers=1)
    assert (second.run.skipped, second.run.finished, second.totals["done"]) == (4, N_FACES - 4, N_FACES)
    rows = ledger_rows(out)
    assert all(r["attempts"] == 1 for r in rows)
    assert {r["key"]: r["updated"] for r in rows if r["key"] in done_before} == done_before  # not run again
    assert len(output_files(out)) == N_FACES


def _done(out: Path) -> int:
    """Done items so far in a ledger another process is writing (0 while it is being created)."""
    try:
        return sum(r["status"] == "done" for r in ledger_rows(out)) if (out / LEDGER_NAME).exists() else 0
    except sqlite3.OperationalError:
        return 0


def test_resume_after_killing_the_run(faces_dir, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "facedeid", "batch", str(faces_dir), "-o", str(out), "--method", "pixelate",
           "--detector", "hog", "--workers", "1", "-q"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if _done(out) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run we started: driver and its pool
        proc.wait()
    rows = ledger_rows(out)
    assert 2 <= sum(r["status"] == "done" for r in rows) < N_FACES
    s = run_batch(faces_dir, out, "pixelate", detector="hog", workers=1)
    rows = ledger_rows(out)
    assert s.totals["done"] == N_FACES and all(r["status"] == "done" for r in rows)
    assert sorted(output_files(out)) == [r["key"] for r in rows]  # one file per item, no temporary files


def test_failing_item_bounded_retries(faces_dir, tmp_path, capsys):
    faces_dir = faces_dir / "a"
    buf = io.BytesIO()
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(buf, format="JPEG")
    (faces_dir / "trunc.jpg").write_bytes(buf.getvalue()[:300])
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(faces_dir / "blank.png")
    out = tmp_path / "out"
    code = main(["batch", str(faces_dir), "-o", str(out), "--method", "pixelate", "--retries", "2", "--workers", "1", "-q"])
    assert code == UnsupportedMedia.exit_code
    err = capsys.readouterr().err.splitlines()
    assert sum("trunc.jpg" in line for line in err) == 1
    rows = {r["key"]: r for r in ledger_rows(out)}
    bad = rows["trunc.jpg"]
    assert (bad["status"], bad["attempts"], bad["exit_code"]) == ("failed", 2, 3)
    assert "trunc.jpg" in bad["message"] and "\n" not in bad["message"]
    assert rows["blank.png"]["status"] == "done" and rows["blank.png"]["outcome"] == "no-face"
    assert not (out / "trunc.jpg").exists() and (out / "blank.png").exists()
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["totals"]["without_faces"] == 1 and summary["failures"][0]["key"] == "trunc.jpg"
    # the budget is spent: a rerun does not try again; a larger budget does, once more
    assert run_batch(faces_dir, out, "pixelate", retries=2).run.attempts == 0
    assert run_batch(faces_dir, out, "pixelate", retries=3, workers=1).run.attempts == 1
    assert {r["key"]: r["attempts"] for r in ledger_rows(out)}["trunc.jpg"] == 3


def test_changed_settings_are_refused_unless_reset(faces_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(faces_dir), "-o", str(out), "--method", "pixelate", "--limit", "2", "--workers", "1", "-q"]) == 0
    capsys.readouterr()
    for extra in (["--method", "blur"], ["--method", "pixelate", "--param", "n=4"], ["--method", "pixelate", "--detector", "hog"]):
        assert main(["batch", str(faces_dir), "-o", str(out), "-q", *extra]) == BadArguments.exit_code
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "refusing to mix" in err[0] and "--reset" in err[0]
    assert main(["batch", str(faces_dir), "-o", str(out), "--method", "pixelate:n=8", "--plan-only", "-q"]) == 0  # same spec
    before = output_files(out)
    assert main(["batch", str(faces_dir), "-o", str(out), "--method", "blur", "--reset", "--plan-only", "-q"]) == 0
    assert len(before) == 2 and output_files(out) == {}  # the reset removed the pixelate results
    assert main(["batch", str(faces_dir), "-o", str(out), "--method", "blur", "--limit", "3", "--workers", "1", "-q"]) == 0
    after = output_files(out)
    assert len(after) == 3 and all(after[k] != before[k] for k in before)
    assert {r["status"] for r in ledger_rows(out)} == {"done", "pending"}


def test_set_method_is_refused(faces_dir, tmp_path, capsys):
    code = main(["batch", str(faces_dir), "-o", str(tmp_path / "out"), "--method", "ksame-pixel", "-q"])
    assert code == BadArguments.exit_code and "anonymize-set" in capsys.readouterr().err


def test_manifest_formats(faces_dir, tmp_path):
    files = sorted(faces_dir.rglob("*.jpg"))
    lists = tmp_path / "lists"
    lists.mkdir()
    txt = lists / "items.txt"
    txt.write_text("# relative to this file, then absolute\n" + f"{os.path.relpath(files[0], lists)}\n\n"
                   + "".join(f"{p}\n" for p in files[1:3]))
    s = run_batch(txt, tmp_path / "o_txt", "pixelate", plan_only=True)
    keys = [r["key"] for r in ledger_rows(tmp_path / "o_txt")]
    assert s.totals["pending"] == 3 and s.run.submitted == 3 and s.workers == 0
    assert sorted(keys) == sorted(p.relative_to(p.anchor).as_posix() for p in files[:3])  # outside the list's folder
    csv_file = faces_dir / "items.csv"
    csv_file.write_text("path,output\n" + "".join(f"{p.relative_to(faces_dir)},copy{i}/{p.name}\n" for i, p in enumerate(files[:2]))
                        + f"{files[2].relative_to(faces_dir)},\n")
    out = tmp_path / "o_csv"
    s = run_batch(csv_file, out, "pixelate", workers=1)
    assert s.totals["done"] == 3
    assert sorted(output_files(out)) == sorted([f"copy0/{files[0].name}", f"copy1/{files[1].name}",
                                                files[2].relative_to(faces_dir).as_posix()])
    run_batch(files[0], tmp_path / "o_one", "pixelate", plan_only=True)  # one image: a manifest of one
    assert [r["key"] for r in ledger_rows(tmp_path / "o_one")] == [files[0].name]
    bad = tmp_path / "bad.csv"
    bad.write_text("file\nx.jpg\n")
    assert main(["batch", str(bad), "-o", str(tmp_path / "o_bad"), "--plan-only", "-q"]) == BadArguments.exit_code


def test_evaluate_stores_per_item_figures(faces_dir, tmp_path):
    src = sorted(faces_dir.rglob("*.jpg"))[0]
    (tmp_path / "one.txt").write_text(f"{src}\n")
    s = run_batch(tmp_path / "one.txt", tmp_path / "out", "pixelate", workers=1, evaluate=True)
    row = ledger_rows(tmp_path / "out")[0]
    assert 0 < row["ssim"] < 1 and row["id_distance"] > 0.6  # pixelate n=8 de-identifies for dlib
    assert s.totals["evaluation"]["items"] == 1
