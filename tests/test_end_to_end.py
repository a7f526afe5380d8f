"""A whole run on a tiny BERT built in the test: outputs, reload, resume and determinism."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_run_config
from xdistil import load_student
from xdistil.config import load_config
from xdistil.errors import XDistilError
from xdistil.pipeline import Run


@pytest.fixture(scope="module")
def finished(tiny_teacher, sentiment_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    config = tiny_run_config(tiny_teacher, sentiment_files, out)
    metrics = Run(config).run()
    return config, out, metrics


def test_run_folder_has_everything_a_user_needs(finished):
    config, out, metrics = finished
    for name in ("config.yaml", "metrics.json", "report.md", "curves_student.png", "student/model.safetensors",
                 "student/config.json", "student/tokenizer.json", "teacher/model.safetensors"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "params"):
        assert key in saved["teacher"] and key in saved["student"]
    for size in ("batch_1", "batch_32"):
        assert saved["teacher"]["latency_ms"][size] > 0 and saved["student"]["latency_ms"][size] > 0
    assert 0 <= saved["student"]["loyalty"] <= 1
    assert saved["student"]["params_without_embeddings"] < saved["student"]["params"]
    assert "accuracy" in saved["baseline_no_distillation"]
    assert saved["compression"] == pytest.approx(saved["teacher"]["params"] / saved["student"]["params"])
    assert saved["speedup_batch_32"] > 0
    assert len(saved["stages"]["student"]) == 1 + 4 + 1
    report = (out / "report.md").read_text()
    assert "| test accuracy (%)" in report and "curves_student.png" in report
    # the saved config is complete and reproduces the run's config
    assert load_config(out / "config.yaml") == config


def test_saved_student_predicts_like_the_evaluated_one(finished, sentiment_files):
    _, out, metrics = finished
    student = load_student(out / "student")
    import csv

    with open(sentiment_files["test"]) as handle:
        rows = list(csv.DictReader(handle))
    predicted = student.predict([r["text"] for r in rows])
    accuracy = sum(p == r["label"] for p, r in zip(predicted, rows)) / len(rows)
    assert accuracy == pytest.approx(metrics["student"]["accuracy"])
    assert student.predict_proba(["great film"]).shape == (1, 2)


def test_rerun_resumes_without_training_and_gives_the_same_metrics(finished, monkeypatch):
    config, out, metrics = finished
    import xdistil.distill.runner as runner

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage was trained again")

    import xdistil.teacher.finetune as teacher_finetune

    monkeypatch.setattr(runner, "fit", no_training)
    monkeypatch.setattr(teacher_finetune, "fit", no_training)
    untouched = {part: _stamps(out / part) for part in ("teacher", "cache", "checkpoints")}
    again = Run(config).run()
    assert again["student"]["accuracy"] == metrics["student"]["accuracy"]
    assert again["teacher"]["accuracy"] == metrics["teacher"]["accuracy"]
    # nothing was fine-tuned, annotated or trained again: every file of those steps is as it was
    assert {part: _stamps(out / part) for part in untouched} == untouched


def test_same_seed_gives_bit_identical_student_weights(finished, tiny_teacher, sentiment_files, tmp_path):
    config, out, _ = finished
    other = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "again")
    Run(other).run(until="distill")
    first = load_file(str(out / "student" / "model.safetensors"))
    second = load_file(str(tmp_path / "again" / "student" / "model.safetensors"))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def _stamps(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_changed_student_setting_redoes_only_the_student(finished, tiny_teacher, sentiment_files, tmp_path, capsys):
    config, out, metrics = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    teacher, cache = _stamps(copy / "teacher"), _stamps(copy / "cache")
    changed = tiny_run_config(tiny_teacher, sentiment_files, copy, student={"emb_dim": 8, "hidden": 24})
    again = Run(changed).run()
    log = capsys.readouterr().err
    assert "config changed since the last run (student.hidden: 8 -> 24)" in log
    assert "student: redone (student.hidden: 8 -> 24)" in log
    assert _stamps(copy / "teacher") == teacher and _stamps(copy / "cache") == cache  # not re-trained, not re-annotated
    assert again["teacher"]["accuracy"] == metrics["teacher"]["accuracy"]
    assert again["student"]["params"] != metrics["student"]["params"]
    history = (copy / "config_history.jsonl").read_text().splitlines()
    assert [json.loads(line)["config"]["student"]["hidden"] for line in history][-2:] == [8, 24]


def test_a_changed_teacher_setting_redoes_the_teacher_and_what_follows(finished, tiny_teacher, sentiment_files, tmp_path, capsys):
    config, out, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    cache = _stamps(copy / "cache" / "transfer")
    changed = tiny_run_config(tiny_teacher, sentiment_files, copy, teacher__lr=1e-3)
    Run(changed).run(until="annotate")
    log = capsys.readouterr().err
    assert "teacher: redone (teacher.lr:" in log and "teacher labels transfer: redone (teacher.lr:" in log
    assert set(_stamps(copy / "cache" / "transfer").values()).isdisjoint(cache.values())


def test_overwrite_refuses_a_folder_xdistil_did_not_make(tmp_path, tiny_teacher, sentiment_files):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(XDistilError, match="not an xdistil run folder .* nothing was deleted"):
        Run(tiny_run_config(tiny_teacher, sentiment_files, mine), overwrite=True)
    assert (mine / "thesis.tex").read_text() == "years of work" and len(list(mine.iterdir())) == 1
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(XDistilError, match="names an existing file"):
        Run(tiny_run_config(tiny_teacher, sentiment_files, afile))


def test_overwrite_deletes_only_what_xdistil_wrote(finished, tmp_path, tiny_teacher, sentiment_files):
    _, out, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "notes.txt").write_text("mine")  # the folder carries the marker: the user's own file stays
    Run(tiny_run_config(tiny_teacher, sentiment_files, copy), overwrite=True)
    assert sorted(p.name for p in copy.iterdir()) == sorted([".xdistil-run", ".xdistil-lock", "config.yaml", "config_history.jsonl", "notes.txt"])


def test_a_run_that_failed_before_any_step_accepts_a_corrected_config(tiny_teacher, sentiment_files, tmp_path):
    out = tmp_path / "fresh"
    wrong = tiny_run_config(tiny_teacher, sentiment_files, out, teacher={"model": str(tmp_path / "typo")})
    with pytest.raises(XDistilError, match="folder does not exist"):
        Run(wrong).run(until="finetune")
    Run(tiny_run_config(tiny_teacher, sentiment_files, out)).run(until="finetune")
    assert (out / "teacher" / "model.safetensors").is_file()


def test_an_already_fine_tuned_teacher_is_used_as_it_is(finished, tiny_teacher, sentiment_files, tmp_path):
    _, out, metrics = finished
    as_is = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "as_is", teacher={"model": str(out / "teacher"), "finetune": False})
    made = Run(as_is).execute(until="annotate")
    import numpy as np

    test_logits = made.annotation.caches["test"].load().logits
    accuracy = float((test_logits.argmax(1) == np.asarray(made.data.corpus.test.labels)).mean())
    assert accuracy == pytest.approx(metrics["teacher"]["accuracy"])
    assert not made.teacher.history  # nothing was trained


def test_a_teacher_with_other_labels_is_refused_when_used_as_is(finished, tmp_path):
    _, out, _ = finished
    from conftest import write_csv

    train = write_csv(tmp_path / "t.csv", [("great film", "good"), ("dull film", "bad")] * 5)
    config = tiny_run_config(out / "teacher", {"train": train, "dev": train, "test": train, "transfer": train}, tmp_path / "x",
                             teacher={"model": str(out / "teacher"), "finetune": False})
    with pytest.raises(XDistilError, match="finetune is off but its labels"):
        Run(config).run(until="finetune")


def test_student_folder_has_a_model_card(finished):
    _, out, metrics = finished
    card = (out / "student" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: xdistil\n")
    # no folder of this format loads in transformers: the card declares no pipeline_tag and says so
    assert "pipeline_tag" not in card and "not with `transformers`" in card
    assert f"{metrics['student']['params']:,} parameters" in card
    assert f"**{100 * metrics['student']['probability_loyalty']:.1f}%**" in card and "Jensen-Shannon" in card
    assert "labels (2): neg, pos" in card and "OnnxStudent" in card and "| test accuracy (%) |" in card


def test_student_round_trips_through_the_hub_conventions(finished, tmp_path):
    from xdistil.student.io import DistilledStudent

    _, out, _ = finished
    student = DistilledStudent.from_pretrained(out / "student")
    student.save_pretrained(tmp_path / "copy")
    again = DistilledStudent.from_pretrained(tmp_path / "copy")
    texts = ["great superb film", "dull boring film"]
    assert type(again).__name__ == "DistilledClassifier"
    assert (again.predict_proba(texts) == student.predict_proba(texts)).all()
    assert json.loads((tmp_path / "copy" / "config.json").read_text())["arch"] == "bilstm"


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_a_lower_precision_teacher_annotates_close_to_fp32(finished, tiny_teacher, sentiment_files, tmp_path, precision):
    import numpy as np

    _, out, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    run = Run(tiny_run_config(tiny_teacher, sentiment_files, copy, transfer={"chunk_size": 64, "batch_size": 32,
                                                                           "teacher_precision": precision}))
    teacher_files = _stamps(copy / "teacher")
    low = run.execute(until="annotate").annotation.caches["test"].load().logits
    high = Run(tiny_run_config(tiny_teacher, sentiment_files, out)).execute(until="annotate").annotation.caches["test"].load().logits
    assert _stamps(copy / "teacher") == teacher_files  # the same fine-tuned teacher, converted only to annotate
    assert json.loads((copy / "cache" / "test" / "manifest.json").read_text())["precision"].startswith(f"{precision}: ")
    assert not np.array_equal(low, high)  # really another arithmetic
    assert (low.argmax(1) == high.argmax(1)).mean() >= 0.95 and np.abs(low - high).max() < 0.1


def test_something_is_learned_and_distillation_helps(finished):
    _, _, metrics = finished
    # the synthetic snippets are separable by their sentiment words: far above chance (0.5) for the teacher,
    # and the distilled student beats the same student trained on the 60 gold labels alone
    assert metrics["teacher"]["accuracy"] >= 0.9, metrics["teacher"]
    assert metrics["student"]["accuracy"] >= 0.8, metrics["student"]
    assert metrics["student"]["accuracy"] > metrics["baseline_no_distillation"]["accuracy"]


def test_changed_data_redoes_the_teacher_and_says_so(finished, tiny_teacher, sentiment_files, tmp_path, capsys):
    _, out, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    train = tmp_path / "train.csv"
    lines = sentiment_files["train"].read_text().splitlines()
    train.write_text("\n".join(lines[:-1]) + "\n")  # one example fewer
    teacher = _stamps(copy / "teacher")
    Run(tiny_run_config(tiny_teacher, {**sentiment_files, "train": train}, copy)).run(until="finetune")
    log = capsys.readouterr().err
    assert "data: the data changed since this folder's last run" in log and "teacher: redone" in log
    assert json.loads((copy / "data.json").read_text())["sizes"]["train"] == 59
    assert set(_stamps(copy / "teacher").values()).isdisjoint(teacher.values())
