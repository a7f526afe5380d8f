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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from xdistil.atomic import atomic_write_json, atomic_write_text
from xdistil.config import ANNOTATION_ONLY, RunConfig, TeacherConfig, build_config, config_to_dict, read_yaml_mapping, save_config
from xdistil.errors import XDistilError
from xdistil.folderlock import LOCK, MARKER, lock_run_folder, mark_run_folder
from xdistil.progress import log

HISTORY = "config_history.jsonl"
HISTORY_KEEP = 20
# the config keys each step reads, in the order a changed one is named in the log (see step_reason)
TEACHER_KEYS = ("data", "seed", *(f"teacher.{k}" for k in TeacherConfig.model_fields if k not in ANNOTATION_ONLY))
ANNOTATION_KEYS = (*TEACHER_KEYS, *(f"teacher.{k}" for k in ANNOTATION_ONLY), "transfer")
STUDENT_KEYS = ("student", "distill", *ANNOTATION_KEYS)


@dataclass(frozen=True)
class RunFolder:
    """The named paths of a run folder: every file or folder a step reads or writes directly inside it."""

    root: Path

    config = property(lambda self: self.root / "config.yaml")
    history = property(lambda self: self.root / HISTORY)
    data = property(lambda self: self.root / "data.json")  # the corpus' fingerprint, sizes, labels and notes
    teacher = property(lambda self: self.root / "teacher")  # the fine-tuned teacher (a transformers folder)
    cache = property(lambda self: self.root / "cache")  # the transfer set's annotated chunks, one folder per part
    checkpoints = property(lambda self: self.root / "checkpoints")  # finished stages of each trained student
    student = property(lambda self: self.root / "student")  # the distilled student (xdistil's folder format)
    metrics = property(lambda self: self.root / "metrics.json")
    report = property(lambda self: self.root / "report.md")
    tracking = property(lambda self: self.root / "tracking")  # the trackers' files (TensorBoard events, an MLflow store)
    sweep = property(lambda self: self.root / "sweep")  # `xdistil sweep`: one run folder per student, the frontier
    best = property(lambda self: self.root / "best")  # `xdistil sweep` with a budget: the chosen student

    def member(self, index: int) -> Path:
        """An ensemble's further teacher number `index` (1, 2, ...; teacher.model is `teacher/`)."""
        return self.root / "teachers" / f"member-{index}"

    def student_tokens(self, tokenizer_fp: str) -> Path:
        """The student's own token ids of the transfer set, when it reads another tokenizer than the teacher's."""
        return self.cache / f"student-{tokenizer_fp}"

    def stage_checkpoints(self, name: str) -> Path:
        return self.checkpoints / name


# every name xdistil writes directly inside a run folder (plots match curves_*.png; temporaries end in .tmp)
WRITTEN = tuple(getattr(RunFolder(Path()), name).name for name in ("config", "data", "teacher", "cache", "checkpoints", "student",
                                                                   "metrics", "report", "tracking", "sweep", "best")) + ("teachers", MARKER, HISTORY, LOCK)


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


def clear_run_folder(out: Path) -> None:
    """Delete what xdistil wrote in a run folder, and nothing else."""
    for path in out.iterdir():
        if _ours(path.name) and path.name not in (MARKER, LOCK):  # this run holds the lock
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def previous_config(out: Path) -> dict | None:
    """The config the folder's last run used (with today's defaults filled in), or None."""
    saved = RunFolder(out).config
    if not saved.is_file():
        return None
    try:
        values = read_yaml_mapping(saved)
    except XDistilError:  # an unreadable earlier config only means the steps cannot say what changed
        return None
    return _with_defaults(values)


def prepare_folder(out: Path, config: RunConfig, overwrite: bool, keep_lock: Callable[[FileLock], None]) -> dict | None:
    """Create or reuse the run folder, refusing one that is not xdistil's or that another process is running
    in; record the config and its history. Returns the previous run's config (None for a new folder: steps
    say what changed by it); the lock this run holds is handed to `keep_lock` (it never leaves the process)."""
    mark_run_folder(out)
    keep_lock(lock_run_folder(out))  # before anything is cleared or written
    if overwrite:
        clear_run_folder(out)
    previous = None if overwrite else previous_config(out)
    current = config_to_dict(config)
    if previous is not None:
        # where the folder lives is not a setting: a moved or copied run folder is the same run
        difference = first_difference({**previous, "out": None}, {**current, "out": None})
        log(f"run folder {out}: " + (f"config changed since the last run ({difference}); finished steps it does not touch are reused"
                                     if difference else "same config as the last run; finished steps are reused"))
    save_config(config, RunFolder(out).config)
    _append_history(RunFolder(out).history, current)
    return previous


def _append_history(path: Path, config: dict) -> None:
    """Keep the last HISTORY_KEEP configs this folder ran, one JSON line each, newest last."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    entry = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "config": config}, default=str)
    atomic_write_text(path, "\n".join((lines + [entry])[-HISTORY_KEEP:]) + "\n")


def record_data(out: Path, fingerprint: str, corpus, overlap_policy: str) -> None:
    """Write data.json (sizes, labels, notes) and log them; say so when the data changed since the folder's last run
    (the steps that read it are redone: their fingerprints include the data's)."""
    path = RunFolder(out).data
    if path.is_file() and json.loads(path.read_text(encoding="utf-8")).get("fingerprint") != fingerprint:
        log("data: the data changed since this folder's last run; the teacher and every later step will be redone")
    atomic_write_json(path, {"fingerprint": fingerprint, "sizes": corpus.sizes(), "labels": corpus.label_names, "notes": corpus.notes,
                             "transfer_overlap": {"policy": overlap_policy, "count": corpus.transfer.overlap_count},
                             **({"transfer_repeats_dropped": corpus.transfer.repeat_count} if corpus.transfer.repeats == "drop" else {})})
    log(f"data: {', '.join(f'{k} {v:,}' for k, v in corpus.sizes().items())}; labels {corpus.label_names}")
    for note in corpus.notes:
        log(f"  {note}")


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
