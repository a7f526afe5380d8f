"""The run folder's guard: a folder holding finished work is reused only for the same config and data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from xdistil.config import RunConfig, build_config, config_to_dict, save_config
from xdistil.errors import XDistilError
from xdistil.storage import atomic_write_json

WORK = ("teacher", "cache", "checkpoints", "student")


def first_difference(old: object, new: object, prefix: str = "") -> str | None:
    """The first key whose value differs between two nested dicts, as 'key.path: old -> new'."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            found = first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if old == new else f"{prefix.rstrip('.')}: {old!r} -> {new!r}"


def _with_defaults(saved: dict) -> dict:
    """A saved config with the defaults of settings added since it was written (a newer xdistil's keys
    do not make an older run folder 'another config'); as saved when it no longer validates."""
    try:
        return config_to_dict(build_config(saved, "saved"))
    except XDistilError:
        return saved


def prepare_folder(out: Path, config: RunConfig, overwrite: bool) -> None:
    """Create the folder and save the config; refuse a folder whose finished work came from another config."""
    saved = out / "config.yaml"
    current = config_to_dict(config)
    # only finished work is protected: a run that failed before any step may be re-run with a corrected config
    has_work = any((out / name).exists() for name in WORK)
    if saved.is_file() and has_work and not overwrite:
        difference = first_difference(_with_defaults(yaml.safe_load(saved.read_text(encoding="utf-8"))), current)
        if difference:
            raise XDistilError(f"{out}: holds a run with another config ({difference}); choose another --out or pass --overwrite")
    elif overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, saved)


def record_data(out: Path, fingerprint: str, summary: dict) -> None:
    """Write data.json; refuse data that changed under a run folder that already has a teacher."""
    path = out / "data.json"
    if path.is_file() and (out / "teacher").exists():
        if json.loads(path.read_text(encoding="utf-8")).get("fingerprint") != fingerprint:
            raise XDistilError(f"{out}: the data files changed since this run folder was made; use another --out or --overwrite")
    atomic_write_json(path, {"fingerprint": fingerprint, **summary})
