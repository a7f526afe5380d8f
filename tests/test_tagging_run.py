"""End-to-end tagging: CoNLL files and unlabeled text -> teacher -> per-word cache -> BiLSTM tagger -> metrics."""

from __future__ import annotations

import json

import numpy as np

from conftest import tiny_run_config
from xdistil import load_student
from xdistil.pipeline import Run


def test_tagging_run_produces_metrics_report_and_a_loadable_tagger(tiny_teacher, tagging_files, tmp_path):
    config = tiny_run_config(
        tiny_teacher, tagging_files, tmp_path / "run", task="tagging",
        teacher__epochs=15, teacher__lr=3e-3, teacher__patience=15, student={"emb_dim": 16, "hidden": 16},
    )
    config.distill.lr = 1e-2
    config.distill.stages[1].epochs = 4
    metrics = Run(config).run()
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["task"] == "tagging" and saved["primary_metric"] == "f1"
    for who in ("teacher", "student", "baseline_no_distillation"):
        assert 0.0 <= saved[who]["f1"] <= 1.0
        assert set(saved[who]["per_type"]) == {"PER", "LOC"}
    assert saved["teacher"]["f1"] > 0.5  # the synthetic entities are learnable
    # distillation through the per-word cache works: the student follows the teacher, unlike gold-only training
    assert saved["student"]["f1"] >= 0.8 * saved["teacher"]["f1"]
    assert saved["student"]["f1"] > saved["baseline_no_distillation"]["f1"]
    assert saved["retention"] == saved["student"]["f1"] / saved["teacher"]["f1"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "entity F1" in report
    # long sentences were split for the teacher and reported, never cut
    assert any("split into teacher windows" in n for n in json.loads((tmp_path / "run" / "data.json").read_text())["notes"]) or any(
        "split into teacher windows" in line for line in report.splitlines()
    )
    tagger = load_student(tmp_path / "run" / "student")
    long_sentence = ["alice", "met", "bob", "in", "paris"] * 12
    tags = tagger.predict([long_sentence, "carol visited rome"])
    assert len(tags[0]) == len(long_sentence) and len(tags[1]) == 3
    assert set(np.concatenate([np.asarray(t) for t in tags])) <= set(tagger.label_names)
    assert metrics["student"]["loyalty"] > 0
