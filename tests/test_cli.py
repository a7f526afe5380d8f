"""The command line: a run from flags alone, prediction, and one-line errors with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import tiny_run_config, write_csv
from xdistil.config import config_to_dict


def xdistil(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDISTIL_QUIET": "1"}
    return subprocess.run([sys.executable, "-m", "xdistil", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2 and the error as the last stderr line, the only one starting `error:`; any lines before
    it are the run's own log lines (what was done before the problem was found), never a traceback."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert lines == errors, result.stderr  # exactly one line: the error
    assert "Traceback" not in result.stderr and "warning" not in result.stderr.lower(), result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_run_from_flags_then_predict(tiny_teacher, sentiment_files, tmp_path):
    out = tmp_path / "flags_run"
    config = tiny_run_config(tiny_teacher, sentiment_files, out)
    # a config file carries the small test settings; flags give the data, the teacher and the folder
    values = config_to_dict(config)
    values.pop("data")
    values["teacher"].pop("model")
    values.pop("out")
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(values))
    result = xdistil(
        "run", str(tmp_path / "small.yaml"), "--teacher", str(tiny_teacher), "--train", str(sentiment_files["train"]),
        "--test", str(sentiment_files["test"]), "--transfer", str(sentiment_files["transfer"]), "--out", str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "| test accuracy (%)" in result.stdout
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["train"] == str(sentiment_files["train"]) and saved["data"]["dev"] is None
    predicted = xdistil("predict", str(out / "student"), "great superb brilliant film", "dull boring awful film")
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.split() == ["pos", "neg"]  # the synthetic sentiment words were learned


def test_run_with_a_transformer_student_from_flags(tiny_teacher, other_encoder, sentiment_files, tmp_path):
    out = tmp_path / "tf_run"
    values = config_to_dict(tiny_run_config(tiny_teacher, sentiment_files, out))
    values["distill"]["stages"] = [{"name": "soft", "losses": {"soft": 1.0}, "epochs": 1}]  # a BiLSTM schedule: the flag replaces it
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(values))
    result = xdistil("run", str(tmp_path / "small.yaml"), "--student", "transformer", "--student-layers", "2",
                     "--student-encoder", str(other_encoder), "--out", str(out))
    assert result.returncode == 0, result.stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["student"]["arch"] == "transformer" and saved["student"]["layers"] == 2
    assert saved["student"]["encoder"] == str(other_encoder) and saved["student"]["emb_dim"] is None  # not the BiLSTM's 8
    assert [s["name"] for s in saved["distill"]["stages"]] == ["soft", "gold"] and saved["distill"]["lr"] == 1e-4
    predicted = xdistil("predict", str(out / "student"), "great superb film", "dull boring film")
    assert predicted.returncode == 0, predicted.stderr
    assert len(predicted.stdout.split()) == 2 and set(predicted.stdout.split()) <= {"pos", "neg"}


def test_config_command_prints_a_loadable_config(tmp_path):
    result = xdistil("config")
    assert result.returncode == 0
    (tmp_path / "c.yaml").write_text(result.stdout)
    from xdistil.config import load_config

    assert load_config(tmp_path / "c.yaml").data.dataset == "rotten_tomatoes"


@pytest.mark.parametrize(
    "make, fragments",
    [
        (lambda d, t: ["run", "--teacher", str(t), "--train", str(d / "missing.csv")], ["missing.csv: file not found"]),
        (lambda d, t: ["run", "--teacher", str(d / "no_model_here"), "--train", str(write_csv(d / "ok.csv", [("a", "x"), ("b", "y")]))],
         ["no_model_here", "folder does not exist"]),
        (lambda d, t: ["run", "--teacher", str(d), "--train", str(write_csv(d / "ok2.csv", [("a", "x"), ("b", "y")]))],
         ["not a model folder"]),
        (lambda d, t: ["run", str(_write(d / "bad.yaml", "studnet: {}\n"))], ["bad.yaml: unknown key 'studnet'"]),
        (lambda d, t: ["run", str(_write(d / "bad2.yaml", "distill:\n  epochs: many\n"))], ["bad2.yaml: field 'distill.epochs'"]),
        (lambda d, t: ["run"], ["give a CONFIG file"]),
        (lambda d, t: ["predict", str(d)], ["not an xdistil student"]),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, tiny_teacher, make, fragments):
    result = xdistil(*make(tmp_path, tiny_teacher), cwd=tmp_path)
    assert_one_line_error(result, *fragments)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_tagging_run_from_conll_files_then_predict(tiny_teacher, tagging_files, tmp_path):
    out = tmp_path / "tagging_run"
    values = config_to_dict(tiny_run_config(tiny_teacher, tagging_files, out, teacher__epochs=15, teacher__lr=3e-3))
    for key in ("data", "out", "task"):
        values.pop(key)
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(values))
    result = xdistil(
        "run", str(tmp_path / "small.yaml"), "--train", str(tagging_files["train"]), "--dev", str(tagging_files["dev"]),
        "--test", str(tagging_files["test"]), "--transfer", str(tagging_files["transfer"]), "--out", str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "| test entity F1, micro (%)" in result.stdout  # the .conll train file made it a tagging run
    assert yaml.safe_load((out / "config.yaml").read_text())["task"] == "tagging"
    assert (out / "metrics.json").is_file() and (out / "report.md").is_file()
    predicted = xdistil("predict", str(out / "student"), "alice met bob in paris", "rome")
    assert predicted.returncode == 0, predicted.stderr
    lines = predicted.stdout.strip().splitlines()
    assert [len(line.split()) for line in lines] == [5, 1]
    assert all(pair.rsplit("/", 1)[1] in ("O", "B-PER", "I-PER", "B-LOC", "I-LOC") for line in lines for pair in line.split())
