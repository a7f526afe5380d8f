"""Tamper-evident folders: `manifest.json`, written last, holds the SHA-256 of every other file, and loading
checks it, so a deleted, altered or forged file is refused in one line instead of silently changing outputs.

Used by the student folder and the exported ONNX folder; torch-free, as the ONNX runtime must be.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from xdistil.errors import XDistilError
from xdistil.atomic import atomic_write_json

MANIFEST = "manifest.json"


def sha256(path: Path) -> str:
    """The file's SHA-256 hex digest, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, kind: str) -> None:
    """Write the checksums of every file now in `folder` (call it last)."""
    files = {p.name: sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    atomic_write_json(folder / MANIFEST, {"format": kind, "sha256": files})


def verify_manifest(folder: Path, kind: str, required: tuple[str, ...], what: str) -> None:
    """Refuse `folder` when its manifest is missing or is not of `kind`, lists none of `required`, or a file
    it lists is missing or altered. `what` names the folder's content in the errors ("student", "exported student")."""
    path = folder / MANIFEST
    if not path.is_file():
        raise XDistilError(f"{path}: missing; expected the checksums xdistil writes last when it saves a {what} "
                           "(the save did not finish, or the folder was not made by xdistil)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        expected = manifest["sha256"]
        if manifest.get("format") != kind or not isinstance(expected, dict):
            raise ValueError(kind)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise XDistilError(f"{path}: not a valid {what} manifest (expected format {kind})") from None
    for name in required:
        if name not in expected:
            raise XDistilError(f"{path}: lists no checksum for {name}")
    for name, digest in expected.items():
        file = folder / str(name)
        if Path(str(name)).name != name:
            raise XDistilError(f"{path}: lists '{name}', which is not a file of this folder")
        if not file.is_file():
            raise XDistilError(f"{file}: missing; the {what} folder is incomplete")
        if sha256(file) != digest:
            raise XDistilError(f"{file}: altered since the {what} was saved (checksum mismatch); save or export it again")
