"""Interrupted runs: SIGKILL a real `xdistil` process mid-annotation and mid-distillation, then re-run.

The re-run must not redo finished chunks or stages, and must end with exactly the student and
metrics of an uninterrupted run with the same seed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import make_sentence, tiny_run_config
from xdistil.config import config_to_dict
from xdistil.pipeline import Run


@pytest.fixture(scope="module")
def big_transfer(tmp_path_factory) -> Path:
    rng = random.Random(11)
    path = tmp_path_factory.mktemp("big") / "transfer.txt"
    path.write_text("\n".join(make_sentence(rng, rng.choice(["pos", "neg"])) for _ in range(12000)) + "\n")
    return path


def _config(tiny_teacher, sentiment_files, big_transfer, out):
    files = {**sentiment_files, "transfer": big_transfer}
    return tiny_run_config(tiny_teacher, files, out, transfer={"chunk_size": 250, "batch_size": 64})


def _start(step: str, config_path: Path) -> subprocess.Popen:
    env = {**os.environ, "XDISTIL_QUIET": "1"}
    return subprocess.Popen([sys.executable, "-m", "xdistil", step, str(config_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_when(process: subprocess.Popen, ready, timeout: float = 300) -> None:
    """SIGKILL the process as soon as `ready()` is true; fail if it finished first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"finished before it could be killed: {process.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("*.safetensors"))}


@pytest.fixture(scope="module")
def uninterrupted(tiny_teacher, sentiment_files, big_transfer, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    return out, Run(_config(tiny_teacher, sentiment_files, big_transfer, out)).run()


def test_killed_annotation_and_distillation_resume_to_the_same_result(uninterrupted, tiny_teacher, sentiment_files, big_transfer, tmp_path):
    whole_out, whole_metrics = uninterrupted
    out = tmp_path / "run"
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config_to_dict(_config(tiny_teacher, sentiment_files, big_transfer, out))))
    rng = random.Random(int(time.time()))
    cache = out / "cache" / "transfer"

    # 1. kill annotation after a random number of finished chunks (of 49)
    at_chunk = rng.randint(2, 40)
    _kill_when(_start("annotate", config_path), lambda: len(list(cache.glob("chunk-*.safetensors"))) >= at_chunk)
    done_before = _stamps(cache)
    assert 0 < len(done_before) < 49
    finished = subprocess.run([sys.executable, "-m", "xdistil", "annotate", str(config_path)],
                              env={**os.environ, "XDISTIL_QUIET": "1"}, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "already done, resuming" in finished.stderr
    after = _stamps(cache)
    assert len(after) == 49
    assert all(after[name] == stamp for name, stamp in done_before.items()), "a finished chunk was redone"

    # 2. kill distillation once a random number of stages (of 6) is checkpointed
    stages = out / "checkpoints" / "student"
    at_stage = rng.randint(1, 5)
    _kill_when(_start("distill", config_path), lambda: len(list(stages.glob("stage-*.json"))) >= at_stage)
    stages_before = {p.name: p.stat().st_mtime_ns for p in stages.glob("stage-*.json")}
    assert 0 < len(stages_before) < 6

    resumed = subprocess.run([sys.executable, "-m", "xdistil", "run", str(config_path)],
                             env={**os.environ, "XDISTIL_QUIET": "1"}, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert all((stages / name).stat().st_mtime_ns == stamp for name, stamp in stages_before.items()), "a finished stage was redone"

    metrics = json.loads((out / "metrics.json").read_text())
    for part in ("teacher", "student", "baseline_no_distillation"):
        for key in ("accuracy", "macro_f1"):
            assert metrics[part][key] == whole_metrics[part][key], (part, key)
    assert metrics["student"]["loyalty"] == whole_metrics["student"]["loyalty"]
    a = load_file(str(out / "student" / "model.safetensors"))
    b = load_file(str(whole_out / "student" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
