"""Command line: parses arguments, calls the library, prints. No logic of its own."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import BadArguments, FaceDeidError
from .faces.detect import DEFAULT_DETECTOR, backends

EXIT_OK = 0


def _params(items: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise BadArguments(f"--param {item!r}: use key=value")
        out[key.strip()] = value.strip()
    return out


def _cmd_anonymize(args: argparse.Namespace) -> int:
    from .api import anonymize_paths
    from .pipeline import VideoOptions

    video = VideoOptions(detect_every=args.detect_every, quality=args.quality, keep_partial=args.keep_partial)
    worst = EXIT_OK
    for res in anonymize_paths(
        args.inputs, args.output, method=args.method, params=_params(args.param), detector=args.detector,
        on_no_face=args.on_no_face, seed=args.research_seed, quiet=args.quiet, video=video,
    ):
        if res.message:
            print(("error: " if res.status == "error" else "warning: ") + res.message, file=sys.stderr)
        worst = worst or res.exit_code
    return worst


def _cmd_anonymize_set(args: argparse.Namespace) -> int:
    from .set_pipeline import anonymize_set_paths

    run = anonymize_set_paths(args.inputs, args.output, method=args.method, params=_params(args.param),
                              detector=args.detector, quiet=args.quiet)
    for res in run.files:
        if res.message:
            print(("warning: " if res.status == "no-face" else "error: ") + res.message, file=sys.stderr)
    if args.report:
        from .media.images import write_atomic

        write_atomic(args.report, json.dumps(run.report, indent=1, default=str).encode())
    ks = run.report.get("ksame")
    if ks and not args.quiet:
        print(f"{ks['faces']} face(s) of {ks['people']} people in {len(ks['clusters'])} clusters: {ks['guarantee']}")
    return next((r.exit_code for r in run.files if r.exit_code), EXIT_OK)


def _cmd_methods(args: argparse.Namespace) -> int:
    from .methods import describe, registry

    infos = [describe(cls) for cls in registry().values()]
    if args.json:
        print(json.dumps(infos, indent=2, default=str))
        return EXIT_OK
    for info in infos:
        params = ", ".join(f"{k}={v}" for k, v in info["params"].items())
        print(f"{info['name']:<12} {info['kind']:<16} {info['summary']}")
        print(f"{'':<12} reference: {info['reference']}")
        print(f"{'':<12} params: {params}\n")
    return EXIT_OK


def _cmd_detect(args: argparse.Namespace) -> int:
    from .api import detect_file

    faces = detect_file(args.image, detector=args.detector, with_68=args.landmarks68)
    if args.json:
        print(json.dumps({"image": str(args.image), "faces": [f.to_dict() for f in faces]}, indent=1))
    else:
        for f in faces:
            print(f"{f.detector:<10} score {f.score:6.2f}  box {f.box.to_list()}")
        print(f"{len(faces)} face(s)")
    return EXIT_OK


def _cmd_recover(args: argparse.Namespace) -> int:
    from .media.images import IMAGE_SUFFIXES

    if Path(args.input).suffix.lower() not in IMAGE_SUFFIXES:
        from .video_mask import recover_video

        rep = recover_video(args.input, args.output, args.key or args.password, theta_deg=args.theta, detector=args.detector,
                            reveal=args.reveal)
        how = f" ({rep.get('how')})" if args.reveal else ""
        print(f"{args.output}: {rep.get('frames', '?')} frame(s) recovered{how}")
        return EXIT_OK
    from .recovery import recover_file

    res = recover_file(args.input, args.output, password=args.password or args.key, level=args.level,
                       detector=args.detector, reveal=args.reveal, anchor=not args.no_anchor)
    how = f" ({res.how})" if args.reveal else ""
    print(f"{res.dst}: recovered{how}")
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate

    ev = evaluate(args.original, args.anonymized, pairs=args.pairs, detectors=args.detectors.split(","),
                  fid_weights=args.fid_weights, lpips_weights=args.lpips_weights, lpips_heads=args.lpips_heads)
    if args.csv:
        print(ev.to_csv(), end="")
    elif args.json:
        print(ev.to_json())
    else:
        for key, value in ev.summary.items():
            if isinstance(value, dict) and "available" in value:
                value = value["value"] if value["available"] else value["reason"]
            print(f"{key:<24} {value if isinstance(value, (dict, str)) else (f'{value:.4f}' if isinstance(value, float) else value)}")
    for f in ev.files:
        if f.error:
            print(f"error: {f.error}", file=sys.stderr)
    return 3 if any(f.error for f in ev.files) else EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    import os

    from .bench import report, runner

    if args.data:
        os.environ["FACEDEID_DATA"] = str(Path(args.data).resolve())
    rows = runner.run(args.method, Path(args.out), n_pairs=args.pairs, n_identities=args.identities,
                      workers=args.workers, seed=args.research_seed, sweeps=args.sweep or [], held_out=args.held_out)
    print(report.markdown_table(rows))
    print(f"\nreport: {Path(args.out) / 'report.md'}  {Path(args.out) / 'report.html'}")
    return EXIT_OK


def _cmd_model_build(args: argparse.Namespace) -> int:
    from .model import build

    return build.run(args)


def _cmd_build_space(args: argparse.Namespace) -> int:
    from .identity import space

    space.build(Path(args.data) if args.data else None, Path(args.out) if args.out else None, args.k)
    return EXIT_OK


def _cmd_train_attributes(args: argparse.Namespace) -> int:
    from .attributes import train
    from .bench.datasets import data_root

    out = args.out or str(Path(train.__file__).parent / "data")
    train.train(Path(args.data) if args.data else data_root(), out, args.cache)
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .web.app import Limits, create_app

    limits = Limits(max_upload_bytes=args.max_upload_mb * 1024 * 1024, max_pixels=int(args.max_megapixels * 1e6))
    print(f"facedeid page on http://{args.host}:{args.port}/  (Ctrl-C to stop)")
    uvicorn.run(create_app(limits), host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    paths = run_demo(Path(args.out), method=args.method)
    for label, path in paths.items():
        print(f"{label:<14} {path}")
    return EXIT_OK


def _cmd_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch

    summary = run_batch(
        args.source, args.output, method=args.method, params=_params(args.param), detector=args.detector,
        engine=args.engine, workers=args.workers, address=args.address, retries=args.retries, reset=args.reset,
        evaluate=args.evaluate, plan_only=args.plan_only, limit=args.limit, progress=not args.quiet,
    )
    for line in summary.lines():
        print(line, file=sys.stderr if line.startswith(("failed:", "…")) else sys.stdout)
    return summary.exit_code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facedeid", description="Remove the identity from faces in photos.")
    p.add_argument("--version", action="version", version=f"facedeid {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    det_help = f"detector: {', '.join(sorted(backends()))}, union (default: {DEFAULT_DETECTOR}), or a+b"

    a = sub.add_parser("anonymize", help="anonymize image or video files, or folders")
    a.add_argument("inputs", nargs="+", help="image or video files, or folders (recursive)")
    a.add_argument("-o", "--output", required=True, help="output file (single input) or folder")
    a.add_argument("--method", default=None, help="method name or spec, e.g. blur or blur:r=20 (see `facedeid methods`)")
    a.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter (repeatable)")
    a.add_argument("--detector", default=DEFAULT_DETECTOR, help=det_help)
    a.add_argument("--on-no-face", choices=("copy", "fail"), default="copy",
                   help="no face found: copy the image (without metadata) with a warning, or fail (exit 4)")
    a.add_argument("--research-seed", type=int, default=None,
                   help="seed privacy noise for a reproducible research run (NOT privacy-protecting)")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    a.add_argument("--detect-every", type=int, default=1, help="video: run the detector every N frames (optical flow between)")
    a.add_argument("--quality", type=int, default=18, help="video: x264 CRF (lower = better, 18 ≈ visually lossless)")
    a.add_argument("--keep-partial", action="store_true", help="video: on a corrupt/truncated input, write the frames decoded so far")
    a.set_defaults(fn=_cmd_anonymize)

    ks = sub.add_parser("anonymize-set", help="anonymize image files or folders as ONE set (k-Same family)")
    ks.add_argument("inputs", nargs="+", help="image files or folders (recursive): together they form the set")
    ks.add_argument("-o", "--output", required=True, help="output folder (mirrors the inputs)")
    ks.add_argument("--method", default="ksame-pixel", help="set method: ksame-pixel, ksame-eigen, ksame-select, ksame-m")
    ks.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter (repeatable), e.g. k=10")
    ks.add_argument("--detector", default=DEFAULT_DETECTOR, help=det_help)
    ks.add_argument("--report", default=None, help="write the set report (clusters, images without a face) as JSON")
    ks.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    ks.set_defaults(fn=_cmd_anonymize_set)

    m = sub.add_parser("methods", help="list methods with parameters, defaults and book references")
    m.add_argument("--json", action="store_true")
    m.set_defaults(fn=_cmd_methods)

    d = sub.add_parser("detect", help="detect faces in one image")
    d.add_argument("image")
    d.add_argument("--detector", default=DEFAULT_DETECTOR, help=det_help)
    d.add_argument("--landmarks68", action="store_true", help="also output the 68 landmarks")
    d.add_argument("--json", action="store_true")
    d.set_defaults(fn=_cmd_detect)

    rc = sub.add_parser("recover", help="undo a pseudonymization (identity-password photos, identity-mask videos) with the password/key")
    rc.add_argument("input")
    rc.add_argument("-o", "--output", required=True, help="recovered file (PNG keeps exactly recovered pixels exact)")
    rc.add_argument("--password", default="", help="the password (or $FACEDEID_PASSWORD)")
    rc.add_argument("--key", default="", help="the user key of identity-mask videos (Ukey)")
    rc.add_argument("--level", type=int, default=5, help="privacy level d used when anonymizing (identity-password)")
    rc.add_argument("--no-anchor", action="store_true",
                    help="the photo was made with identity-password:anchor=false (rotation of the model code only)")
    rc.add_argument("--theta", type=float, default=60.0, help="rotation angle in degrees used by identity-mask")
    rc.add_argument("--detector", default=DEFAULT_DETECTOR, help=det_help)
    rc.add_argument("--reveal", action="store_true", help="say whether exact (payload) or rotation recovery was used")
    rc.set_defaults(fn=_cmd_recover)

    e = sub.add_parser("evaluate", help="privacy and utility figures: originals vs anonymized (paired by relative path)")
    e.add_argument("--original", required=True, help="folder of original images")
    e.add_argument("--anonymized", required=True, help="folder of anonymized images (same relative paths)")
    e.add_argument("--pairs", default=None, help="LFW-format pairs file: verification with the second image anonymized")
    e.add_argument("--detectors", default="hog,haar,centerface", help="detectors for the face detection rate")
    e.add_argument("--fid-weights", default=None, help="pytorch-fid Inception weights (pt_inception-2015-12-05-6726825d.pth)")
    e.add_argument("--lpips-weights", default=None, help="torchvision AlexNet state dict (optionally with the lpips heads)")
    e.add_argument("--lpips-heads", default=None, help="lpips linear heads (alex.pth) when not inside --lpips-weights")
    fmt = e.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true", help="one row per face")
    e.set_defaults(fn=_cmd_evaluate)

    b = sub.add_parser("bench", help="benchmark methods on LFW fold 1 (privacy, attacker, detection, quality) and write a report")
    b.add_argument("--data", default=None, help="shared data folder (default: ../shared/data or $FACEDEID_DATA)")
    b.add_argument("--method", action="append", required=True, help="method spec, repeatable (e.g. blur:r=5)")
    b.add_argument("--sweep", action="append", help="name=v1,v2,...: also run every method that has this parameter at each value")
    b.add_argument("--out", default="out/bench", help="report folder")
    b.add_argument("--pairs", type=int, default=600, help="fold-1 pairs (half matched, half mismatched)")
    b.add_argument("--identities", type=int, default=100, help="LFW people for identification and the adaptive attacker")
    b.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    b.add_argument("--research-seed", type=int, default=None, help="reproducible noise (NOT privacy-protecting)")
    b.add_argument("--held-out", action="store_true",
                   help="identification/attacker people only from fold 1 (unseen by the face model; use for model-based methods)")
    b.set_defaults(fn=_cmd_bench)

    mb = sub.add_parser("model", help="learn the models the project ships (parametric face model)")
    msub = mb.add_subparsers(dest="model_cmd", required=True)
    build = msub.add_parser("build", help="build the parametric face model from identity-labelled photos")
    build.add_argument("--data", default=None, help="the shared data folder (default: ../shared/data)")
    build.add_argument("--out", default=None, help="output folder (default: the package's model/data)")
    build.add_argument("--cache", default="out/cache/model_landmarks.npz", help="landmark cache (speeds up rebuilds)")
    build.set_defaults(fn=_cmd_model_build)
    bs = msub.add_parser("build-space", help="fit the recognizer identity space used by identity-password's rotation")
    bs.add_argument("--data", default=None, help="the shared data folder (default: ../shared/data)")
    bs.add_argument("--out", default=None, help="output .npz (default: the package's model/data/recognizer_space.npz)")
    bs.add_argument("--k", type=int, default=12, help="number of principal directions (default 12)")
    bs.set_defaults(fn=_cmd_build_space)
    ta = msub.add_parser("train-attributes", help="train the 13-attribute classifier of Ch. 4 (CelebA labels + LFW gender)")
    ta.add_argument("--data", default=None, help="the shared data folder (default: ../shared/data)")
    ta.add_argument("--out", default=None, help="output folder (default: the package's attributes/data)")
    ta.add_argument("--cache", default="out/cache", help="feature cache folder")
    ta.set_defaults(fn=_cmd_train_attributes)

    w = sub.add_parser("serve", help="a local web page (bound to 127.0.0.1 by default)")
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--port", type=int, default=8000)
    w.add_argument("--max-upload-mb", type=int, default=25)
    w.add_argument("--max-megapixels", type=float, default=40.0)
    w.set_defaults(fn=_cmd_serve)

    g = sub.add_parser("demo", help="anonymize the embedded astronaut photo into out/demo")
    g.add_argument("--out", default="out/demo")
    g.add_argument("--method", default=None)
    g.set_defaults(fn=_cmd_demo)

    bt = sub.add_parser("batch", help="resumable batch run over a folder or manifest (local processes or a Ray cluster)")
    bt.add_argument("source", help="folder (walked lazily), text file (one path a line) or CSV with a 'path' column")
    bt.add_argument("-o", "--output", required=True, help="output folder (mirrored tree; holds the job ledger)")
    bt.add_argument("--method", default="pixelate", help="single-image method or spec (set methods: use anonymize-set)")
    bt.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter (repeatable)")
    bt.add_argument("--detector", default=DEFAULT_DETECTOR, help=det_help)
    bt.add_argument("--workers", type=int, default=None, help="processes (default: all cores; ray: CPUs of a new local cluster)")
    bt.add_argument("--engine", choices=("local", "ray"), default="local", help="local process pool, or a Ray cluster")
    bt.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    bt.add_argument("--retries", type=int, default=3, help="attempts per item, across runs (default 3)")
    bt.add_argument("--reset", action="store_true", help="delete this folder's batch outputs and ledger, start over")
    bt.add_argument("--evaluate", action="store_true", help="store SSIM, PSNR and dlib identity distance per item")
    bt.add_argument("--plan-only", action="store_true", help="register the items in the ledger, run nothing")
    bt.add_argument("--limit", type=int, default=None, help="start at most N new items in this run")
    bt.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    bt.set_defaults(fn=_cmd_batch)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 for bad usage, 0 for --help
        return int(exc.code or 0)
    try:
        return int(args.fn(args))
    except FaceDeidError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
