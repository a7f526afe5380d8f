"""Several teachers at once: teacher.model plus teacher.ensemble's members, each fine-tuned and cached as its own step,
labeling the transfer set with the weighted mean of their probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_run_config
from xdistil.pipeline import Run
from xdistil.teacher.store import load_teacher
from xdistil.transfer.labelers import TeacherLabeler

MEMBERS = [{"seed": 11}, {"seed": 12, "weight": 2.0}]


def test_an_ensemble_labels_with_the_weighted_mean_of_its_teachers_and_reports_each(tiny_teacher, sentiment_files, tmp_path):
    config = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "run", teacher__ensemble=MEMBERS, teacher__epochs=4)
    run = Run(config)
    made = run.execute()
    members = made.teacher.members
    assert [(m.seed, m.weight) for m in members] == [(11, 1.0), (12, 2.0)]
    assert all((tmp_path / "run" / "teachers" / f"member-{i}" / "config.json").is_file() for i in (1, 2))

    texts, _, _ = made.transfer.parts()["transfer"]
    texts = list(texts)
    spec = made.annotation.caches["transfer"].manifest
    teachers = [made.teacher] + [m.teacher for m in members]
    own = []
    for teacher in teachers:
        labeler = TeacherLabeler.of(teacher, made.tokenizer, run.task, made.data.corpus.label_names, "fp32", tmp_path)
        from xdistil.transfer.cache import AnnotationSpec

        tensors, _ = labeler.label(texts, AnnotationSpec(spec["max_length"], 32, 64, spec["layer"], spec["pooling"], "float16"), lambda n: None)
        own.append(tensors)
    weights = np.array([1.0, 1.0, 2.0]) / 4.0
    expected = np.log(sum(w * torch.softmax(t["logits"].double(), -1).numpy() for w, t in zip(weights, own)))
    cached = made.annotation.caches["transfer"].load()
    assert np.allclose(cached.logits, expected, atol=1e-5)
    assert np.allclose(cached.representations, own[0]["repr"].numpy(), atol=1e-2)  # teacher.model's representations

    figures = made.metrics["teacher"]["members"]
    assert [(f["seed"], f["weight"]) for f in figures] == [(3, 1.0), (11, 1.0), (12, 2.0)]
    assert all(0 <= f["accuracy"] <= 1 and 0 <= f["student_loyalty"] <= 1 for f in figures)
    assert len({round(f["student_probability_loyalty"], 6) for f in figures}) > 1  # three different teachers
    assert "The ensemble's teachers (test)" in (tmp_path / "run" / "report.md").read_text(encoding="utf-8")

    stamps = [(tmp_path / "run" / "teachers" / f"member-{i}" / "model.safetensors").stat().st_mtime_ns for i in (1, 2)]
    again = Run(config).execute()  # each member is its own cached step: nothing is fine-tuned again
    assert [(tmp_path / "run" / "teachers" / f"member-{i}" / "model.safetensors").stat().st_mtime_ns for i in (1, 2)] == stamps
    assert again.metrics["teacher"]["members"] == figures
    saved = load_teacher(tmp_path / "run" / "teachers" / "member-1", members[0].teacher.fingerprint, run.task.teacher_class, "cpu")
    assert saved is not None and saved.history  # fine-tuned, with its own history


def test_an_ensemble_needs_models_it_can_fine_tune(tiny_teacher, sentiment_files, tmp_path):
    with pytest.raises(Exception, match="teacher.ensemble combines fine-tuned models; teacher.source is function"):
        tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "r", teacher__ensemble=MEMBERS, teacher__source="function",
                        teacher__function="test_labelers:keyword_labels")
