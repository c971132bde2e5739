"""Recovery of pseudonymized faces (``identity-password``, book Ch. 6.3; exact payloads, issue 7).

Two ways back, tried in this order by :func:`recover_file`:

1. **exact** — the output carries an authenticated, encrypted payload (AES-256-GCM, key from the
   password by scrypt with a random salt; :mod:`facedeid.media.payload`) holding the original pixels
   of every region the method changed; the right password restores them exactly;
2. **rotation** — every face is encoded into the identity code and its recognizer descriptor is
   measured; the rotation of Eq. 6.16–6.20 is inverted on both with the password's directions and
   the level's θ (closed form, :func:`facedeid.privacy.rotation.recover_nearest`), and the recovered
   code is rendered, optimised to the recovered descriptor (:mod:`facedeid.model.anchor`).

A wrong password or a tampered payload is not reported as such: recovery silently falls back to the
rotation, which with a wrong password yields a plausible face of yet another identity (a decoy,
Ch. 8.6.3 "security via ambiguity"). Only ``reveal=True`` says which path was taken.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import BadKey, FaceDeidError
from .faces.detect import DEFAULT_DETECTOR, detect
from .faces.landmarks import with_landmarks68
from .media import payload
from .media.images import decode_image, encode_image, write_atomic
from .methods.identity_privacy import ROTATION_PURPOSE, SPACE_PURPOSE, password_or_env
from .privacy.keys import reference_direction
from .privacy.rotation import recover_nearest, theta_for_level


def changed_patches(original: np.ndarray, anonymized: np.ndarray, grow: int = 2) -> list[tuple[int, int, np.ndarray]]:
    """The original pixels of every connected region where ``anonymized`` differs (bounding boxes
    grown by ``grow`` pixels): what an exact-recovery payload must hold, and nothing else."""
    diff = np.any(np.asarray(original) != np.asarray(anonymized), axis=-1) if original.ndim == 3 else original != anonymized
    if not diff.any():
        return []
    mask = cv2.dilate(diff.astype(np.uint8), np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h = stats[i, :4]
        out.append((int(y), int(x), np.ascontiguousarray(original[y:y + h, x:x + w])))
    return out


def seal_original(original: np.ndarray, anonymized: np.ndarray, password: str) -> bytes:
    """The encrypted exact-recovery payload for one image."""
    return payload.seal(payload.pack_patches(changed_patches(original, anonymized)), password)


def embed_payload(encoded: bytes, fmt: str, blob: bytes, dst: Path) -> tuple[bytes, bool]:
    """Put ``blob`` into the encoded output (PNG chunk, JPEG APP11) or report that a sidecar is needed."""
    kind = fmt.lower()
    if kind in ("png", "jpeg", "jpg"):
        return payload.embed(encoded, "png" if kind == "png" else "jpeg", blob), False
    return encoded, True


def recovered_descriptor(image: np.ndarray, face, z_r: np.ndarray, theta: float) -> np.ndarray:
    """The recognizer descriptor the key says the face had: the descriptor measured on the
    pseudonymized face, its whitened coordinates rotated back with the key's direction z_r in the
    recognizer space (Eq. 6.16–6.20 inverted, :func:`facedeid.privacy.rotation.recover_nearest`),
    the rest of it kept."""
    from .identity.space import load_space
    from .model.anchor import descriptor

    return load_space().moved(descriptor(image, face.landmarks5), lambda w: recover_nearest(w, z_r, theta))


def recover_image(image: np.ndarray, password: str, level: int, detector: str = DEFAULT_DETECTOR,
                  anchor: bool = True) -> tuple[np.ndarray, list[dict]]:
    """Rotation recovery of every face in ``image``: the model code rotated back (inverse of
    Eq. 6.16–6.20) and rendered; with ``anchor`` (the default, matching ``identity-password``'s) the
    render is optimised to the recovered recognizer descriptor (:func:`recovered_descriptor`)."""
    from .identity.space import load_space
    from .model.anchor import MatchObjective
    from .model.core import IdentityCode, load_model

    model = load_model()
    theta = theta_for_level(level)
    z_r = reference_direction(password, model.dim, ROTATION_PURPOSE)
    z_r_space = reference_direction(password, load_space().k, SPACE_PURPOSE) if anchor else None
    out = image.copy()
    rows = []
    faces = [with_landmarks68(image, f) for f in detect(image, detector)]
    for face in faces:
        fit = model.encode(out, face)
        try:
            z = recover_nearest(fit.code.vector(), z_r, theta)
            settings = MatchObjective(target=recovered_descriptor(out, face, z_r_space, theta)) if z_r_space is not None else None
        except ValueError:
            rows.append({"face": face.box.to_list(), "recovered": False})
            continue
        out = model.render(out, fit, IdentityCode.from_vector(z, model.n_shape), settings).image
        rows.append({"face": face.box.to_list(), "recovered": True})
    return out, rows


@dataclass
class RecoveryResult:
    src: Path
    dst: Path
    faces: int
    how: str  # "exact" or "rotation" (shown only with reveal)
    report: dict[str, Any] = field(default_factory=dict)


def recover_bytes(data: bytes, password: str, level: int = 5, detector: str = DEFAULT_DETECTOR, name: str = "image",
                  blob: bytes | None = None, max_pixels: int | None = None, anchor: bool = True) -> tuple[Any, np.ndarray, str]:
    """Recover encoded image bytes: (decoded input, recovered RGB, "exact" | "rotation").
    ``blob`` is a payload found elsewhere (a sidecar file) when the bytes carry none."""
    dec = decode_image(data, name) if max_pixels is None else decode_image(data, name, max_pixels)
    blob = payload.extract(data) or blob
    if blob is not None:
        try:
            patches = payload.unpack_patches(payload.unseal(blob, password))
            return dec, payload.apply_patches(dec.rgb, patches), "exact"
        except (BadKey, ValueError):
            pass  # a wrong password or a tampered payload: the decoy path, silently
    restored, _ = recover_image(dec.rgb, password, level, detector, anchor)
    return dec, restored, "rotation"


def recover_file(src: str | Path, dst: str | Path, password: str = "", level: int = 5, detector: str = DEFAULT_DETECTOR,
                 reveal: bool = False, anchor: bool = True) -> RecoveryResult:
    """Recover ``src`` into ``dst`` (see module doc). ``dst`` should be lossless (PNG) for exact pixels."""
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise FaceDeidError(f"{dst}: refusing to overwrite the input")
    password = password_or_env(password)
    side = payload.sidecar_path(src)
    dec, restored, how = recover_bytes(src.read_bytes(), password, level, detector, str(src),
                                       blob=side.read_bytes() if side.is_file() else None, anchor=anchor)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}.get(dst.suffix.lower())
    write_atomic(dst, encode_image(dec, restored, fmt))
    changed = int(np.any(restored != dec.rgb, axis=-1).sum())
    return RecoveryResult(src, dst, 1 if changed else 0, how if reveal else "hidden", {"changed_pixels": changed})
