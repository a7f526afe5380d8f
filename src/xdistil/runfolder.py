"""The run folder: a cache of steps, each reused while its own fingerprint matches, with a marker
that says xdistil owns it, so that `--overwrite` never deletes anything xdistil did not write.

A changed config never makes the whole folder unusable: each step (teacher, annotation, student)
compares the fingerprint of exactly what it depends on and redoes itself when that changed; the
log says which steps were reused and which were redone and why (the first differing key).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from xdistil.config import RunConfig, build_config, config_to_dict, save_config
from xdistil.errors import XDistilError
from xdistil.progress import log
from xdistil.storage import atomic_write_json

MARKER = ".xdistil-run"
HISTORY = "config_history.jsonl"
HISTORY_KEEP = 20
# every name xdistil writes directly inside a run folder (plots match curves_*.png; temporaries end in .tmp)
WRITTEN = ("config.yaml", "data.json", "teacher", "cache", "checkpoints", "student", "metrics.json", "report.md", MARKER, HISTORY)


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
    do not count as a change); as saved when it no longer validates."""
    try:
        return config_to_dict(build_config(saved, "saved"))
    except XDistilError:
        return saved


def _ours(name: str) -> bool:
    return name in WRITTEN or name.endswith(".tmp") or (name.startswith("curves_") and name.endswith(".png"))


def is_run_folder(out: Path) -> bool:
    """True when xdistil made `out`: it carries the marker, or holds nothing but what xdistil writes
    (run folders made before the marker existed, or a folder the benchmarks prepared)."""
    return (out / MARKER).is_file() or all(_ours(p.name) for p in out.iterdir())


def clear_run_folder(out: Path) -> None:
    """Delete what xdistil wrote in a run folder, and nothing else."""
    for path in out.iterdir():
        if _ours(path.name):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def previous_config(out: Path) -> dict | None:
    """The config the folder's last run used (with today's defaults filled in), or None."""
    saved = out / "config.yaml"
    if not saved.is_file():
        return None
    values = yaml.safe_load(saved.read_text(encoding="utf-8"))
    return _with_defaults(values) if isinstance(values, dict) else None


def prepare_folder(out: Path, config: RunConfig, overwrite: bool) -> dict | None:
    """Create or reuse the run folder, refusing one that is not xdistil's; record the config and its
    history. Returns the previous run's config (None for a new folder) so steps can say what changed."""
    if out.exists() and not out.is_dir():
        raise XDistilError(f"{out}: --out names an existing file; expected a folder for the run")
    if out.is_dir() and any(out.iterdir()) and not is_run_folder(out):
        raise XDistilError(
            f"{out}: folder is not empty and is not an xdistil run folder (no {MARKER} marker); "
            "nothing was deleted - choose a new or empty folder for --out"
        )
    if overwrite and out.is_dir():
        clear_run_folder(out)
    previous = None if overwrite else previous_config(out)
    current = config_to_dict(config)
    if previous is not None:
        # where the folder lives is not a setting: a moved or copied run folder is the same run
        difference = first_difference({**previous, "out": None}, {**current, "out": None})
        log(f"run folder {out}: " + (f"config changed since the last run ({difference}); finished steps it does not touch are reused"
                                     if difference else "same config as the last run; finished steps are reused"))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / MARKER, {"xdistil_run": 1})
    save_config(config, out / "config.yaml")
    _append_history(out / HISTORY, current)
    return previous


def _append_history(path: Path, config: dict) -> None:
    """Keep the last HISTORY_KEEP configs this folder ran, one JSON line each, newest last."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    entry = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "config": config}, default=str)
    lines = (lines + [entry])[-HISTORY_KEEP:]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


def record_data(out: Path, fingerprint: str, summary: dict) -> None:
    """Write data.json; say so when the data changed since the folder's last run (the steps that read
    it are redone: their fingerprints include the data's)."""
    path = out / "data.json"
    if path.is_file() and json.loads(path.read_text(encoding="utf-8")).get("fingerprint") != fingerprint:
        log("data: the data changed since this folder's last run; the teacher and every later step will be redone")
    atomic_write_json(path, {"fingerprint": fingerprint, **summary})


def step_reason(previous: dict | None, current: dict, keys: tuple[str, ...]) -> str:
    """Why a step is redone: the first differing config key among `keys` ('section' or 'section.key'),
    or the data, when no setting the step reads changed."""
    if previous is None:
        return "not done yet"
    for key in keys:
        section, _, name = key.partition(".")
        old, new = previous.get(section), current.get(section)
        if name:
            old, new = (old or {}).get(name) if isinstance(old, dict) else None, (new or {}).get(name) if isinstance(new, dict) else None
        found = first_difference(old, new, f"{key}.")
        if found:
            return found
    return "its inputs changed: data files, an earlier step, or how this xdistil version computes it"
