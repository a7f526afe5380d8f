"""`xdistil sweep`: several students from one teacher and transfer set, measured from raw text as PyTorch and ONNX
int8, the frontier, the student a budget picks copied to best/, and a second sweep that retrains nothing."""

from __future__ import annotations

import json

import pytest

from conftest import tiny_run_config
from xdistil.errors import XDistilError
from xdistil.sweep import StudentSpec, run_sweep

STUDENTS = ["bilstm", "bilstm:hidden=16", "transformer:layers=1,encoder=teacher"]


@pytest.fixture(scope="module")
def swept(tiny_teacher, sentiment_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "run"
    config = tiny_run_config(tiny_teacher, sentiment_files, out, evaluation={"baseline": False, "latency_batch_sizes": [1], "latency_repeats": 2})
    result = run_sweep(config, [StudentSpec.parse(s) for s in STUDENTS], batch=8, max_latency_ms=1e6)
    return config, out, result


def test_every_student_is_measured_in_both_formats_and_the_budget_picks_the_best(swept):
    from xdistil import load_student
    from xdistil.export.runtime import OnnxStudent

    _, out, result = swept
    names = ["bilstm", "bilstm-hidden16", "transformer-encoderteacher-layers1"]
    assert [(r["student"], r["format"]) for r in result["rows"]] == [(n, f) for n in names for f in ("pytorch", "onnx-int8")]
    assert json.loads((out / "sweep" / "frontier.json").read_text()) == result
    for row in result["rows"]:
        assert set(row["latency_ms"]) == {"batch_1", "batch_8"} and row["size_mb"] > 0
        if row["format"] == "pytorch":  # from raw text, the figure the student's own run measured from its cache
            metrics = json.loads((out / "sweep" / row["student"] / "metrics.json").read_text())
            assert row["quality"] == pytest.approx(metrics["student"]["accuracy"])
    best = max(result["rows"], key=lambda r: (r["quality"], -r["latency_ms"]["batch_8"]))
    assert result["chosen"] == best and f"{best['student']} ({best['format']})" in result["frontier"]
    predictor = OnnxStudent(out / "best") if best["format"] == "onnx-int8" else load_student(out / "best")
    assert len(predictor.predict(["a text", "another text"])) == 2
    assert (out / "sweep" / "report.md").is_file() and (out / "sweep" / "frontier.png").is_file()


def test_a_second_sweep_retrains_nothing_and_an_impossible_budget_picks_nothing(swept):
    config, out, _ = swept
    made = [*(out / "sweep").glob("*/checkpoints/student/stage-*.safetensors"), *(out / "sweep").glob("*/onnx-int8/model.onnx")]
    stamps = {p: p.stat().st_mtime_ns for p in made}
    teacher = (out / "teacher" / "model.safetensors").stat().st_mtime_ns
    result = run_sweep(config, [StudentSpec.parse(s) for s in STUDENTS], batch=8, max_latency_ms=1e-9)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and len([p for p in stamps if p.suffix == ".onnx"]) == 3
    assert (out / "teacher" / "model.safetensors").stat().st_mtime_ns == teacher
    assert result["chosen"] is None


def test_student_specs_read_as_arch_and_settings():
    assert StudentSpec.parse("transformer:layers=3,encoder=minilm-l6") == StudentSpec("transformer", {"layers": 3, "encoder": "minilm-l6"})
    assert StudentSpec.parse("bilstm").name == "bilstm"
    with pytest.raises(XDistilError, match="expected arch\\[:key=value"):
        StudentSpec.parse("bilstm:hidden")
