"""Labelers other than the in-process teacher: a user's function (cached chunk by chunk, resumed without calling it
again, retried a bounded number of times) and a file of labels (checked row by row); both fill the same cache."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from xdistil.errors import XDistilError
from xdistil.transfer.annotators import classify_chunk
from xdistil.transfer.cache import AnnotationSpec, annotate, annotate_parts
from xdistil.transfer.labelers import SMALLEST_PROBABILITY, FileLabeler, FunctionLabeler, TeacherLabeler

LABELS = ["neg", "pos"]
SPEC = AnnotationSpec(max_length=16, batch_size=8, chunk_size=5, layer=None, pooling=None, dtype="float32", without=("repr",))
TEXTS = [f"text number {i} is {'good' if i % 3 else 'bad'}" for i in range(23)]  # 5 chunks: 5, 5, 5, 5, 3


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher):
    return AutoTokenizer.from_pretrained(str(tiny_teacher))


def probabilities(texts: list[str]) -> list[list[float]]:
    """A small deterministic labeler: how 'good' a text is."""
    return [[0.2, 0.8] if "good" in t else [0.9, 0.1] for t in texts]


class Stop(BaseException):
    """What a kill looks like to the labeling loop: not an error it retries."""


def test_a_killed_function_labeler_resumes_without_calling_again_for_finished_chunks(tokenizer, tmp_path):
    calls: list[int] = []

    def dies_on_the_third_chunk(texts):
        calls.append(len(texts))
        if len(calls) == 3:
            raise Stop
        return probabilities(texts)

    first = FunctionLabeler(dies_on_the_third_chunk, "llm v1", LABELS, tokenizer)
    with pytest.raises(Stop):
        annotate(first, iter(TEXTS), len(TEXTS), tmp_path / "c", SPEC, "fp")
    assert len(calls) == 3 and len(list((tmp_path / "c").glob("chunk-*.safetensors"))) == 2
    again = FunctionLabeler(lambda texts: calls.append(len(texts)) or probabilities(texts), "llm v1", LABELS, tokenizer)
    cache = annotate(again, iter(TEXTS), len(TEXTS), tmp_path / "c", SPEC, "fp")
    assert again.calls == 3 and calls[3:] == [5, 5, 3]  # only the three chunks not finished
    rows = cache.load()
    expected = np.log(np.maximum(np.asarray(probabilities(TEXTS)), SMALLEST_PROBABILITY)).astype(np.float32)
    assert np.array_equal(rows.logits, expected) and rows.representations.shape == (len(TEXTS), 0)
    assert [r.tolist() for r in rows.ids] == tokenizer(TEXTS, truncation=True, max_length=16)["input_ids"]
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["without"] == ["repr"]


def test_a_failing_call_is_retried_then_reported_in_one_line(tokenizer, tmp_path):
    failures = iter([TimeoutError("rate limited"), TimeoutError("rate limited")])

    def flaky(texts):
        error = next(failures, None)
        if error:
            raise error
        return [LABELS[1]] * len(texts)

    labeler = FunctionLabeler(flaky, "flaky", LABELS, tokenizer, outputs="labels", retries=2, wait=0.0)
    cache = annotate(labeler, iter(TEXTS[:5]), 5, tmp_path / "ok", SPEC, "fp")
    assert labeler.calls == 3 and (cache.load().logits.argmax(1) == 1).all()
    broken = FunctionLabeler(lambda texts: 1 / 0, "broken", LABELS, tokenizer, retries=1, wait=0.0)
    with pytest.raises(XDistilError, match=r"labeler 'broken' failed 2 times on a chunk of 5 texts .*ZeroDivisionError"):
        annotate(broken, iter(TEXTS[:5]), 5, tmp_path / "broken", SPEC, "fp")
    assert broken.calls == 2 and not list((tmp_path / "broken").glob("chunk-*.safetensors"))


@pytest.mark.parametrize("rows, message", [
    ([[0.5, 0.6]], "probabilities must be non-negative and sum to 1"),
    ([[math.nan, 1.0]], "hold NaN"),
    ([[1.0]], "1 probs, expected 2"),
    (["maybe"], "expected a list of 2 numbers"),
])
def test_a_function_labeler_giving_bad_rows_names_the_text(tokenizer, tmp_path, rows, message):
    labeler = FunctionLabeler(lambda texts: rows * len(texts), "bad", LABELS, tokenizer)
    with pytest.raises(XDistilError, match=message) as error:
        annotate(labeler, iter(TEXTS[:1]), 1, tmp_path / "c", SPEC, "fp")
    assert repr(TEXTS[0]) in str(error.value)


def _write_jsonl(path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_a_file_of_the_teachers_logits_fills_the_same_cache_as_the_teacher(tiny_teacher, tokenizer, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_teacher), num_labels=2).eval()
    spec = AnnotationSpec(16, 8, 5, 1, "first", "float32")
    parts = {"transfer": (TEXTS, len(TEXTS), "fp-transfer")}
    taught = annotate_parts(TeacherLabeler(model, tokenizer, classify_chunk, None, "teacher"), parts, tmp_path / "teacher", spec, "cut")
    logits = taught.caches["transfer"].load().logits
    _write_jsonl(tmp_path / "labels.jsonl", [{"text": t, "logits": row.tolist()} for t, row in zip(TEXTS, logits)])
    labeler = FileLabeler(tmp_path / "labels.jsonl", LABELS, tokenizer)
    labeler.check_covers(TEXTS)
    from_file = annotate_parts(labeler, parts, tmp_path / "file", SPEC, "cut").caches["transfer"].load()
    assert np.array_equal(from_file.logits, logits)  # float32 -> JSON -> float32 is exact
    assert [r.tolist() for r in from_file.ids] == [r.tolist() for r in taught.caches["transfer"].load().ids]


def test_label_files_in_csv_with_hard_labels_and_probabilities_in_tsv(tokenizer, tmp_path):
    (tmp_path / "hard.csv").write_text("text,label\n" + "".join(f'"{t}",{"pos" if "good" in t else "neg"}\n' for t in TEXTS[:5]))
    hard = FileLabeler(tmp_path / "hard.csv", LABELS, tokenizer)
    rows = annotate(hard, iter(TEXTS[:5]), 5, tmp_path / "hard", SPEC, "fp").load()
    assert rows.logits.argmax(1).tolist() == [1 if "good" in t else 0 for t in TEXTS[:5]]
    (tmp_path / "soft.tsv").write_text("text\tprobs\n" + "".join(f"{t}\t{json.dumps(p)}\n" for t, p in zip(TEXTS[:5], probabilities(TEXTS))))
    soft = FileLabeler(tmp_path / "soft.tsv", LABELS, tokenizer)
    assert np.allclose(np.exp(annotate(soft, iter(TEXTS[:5]), 5, tmp_path / "soft", SPEC, "fp").load().logits), probabilities(TEXTS[:5]))


@pytest.mark.parametrize("rows, message", [
    ([{"text": "a", "label": "maybe"}], r"labels.jsonl: line 1: label 'maybe' is not one of the labels neg, pos"),
    ([{"text": "a", "probs": [0.3, 0.3]}], r"labels.jsonl: line 1: probabilities must be non-negative and sum to 1"),
    ([{"text": "a", "logits": [1.0, None]}], r"labels.jsonl: line 1: expected a list of 2 numbers"),
    ([{"text": "a", "logits": [1.0, math.nan]}], r"labels.jsonl: line 1: logits hold NaN"),
    ([{"text": "a", "logits": [1.0, "2"]}], r"labels.jsonl: line 1: expected a list of 2 numbers"),
    ([{"text": "a", "label": "pos"}, {"text": "a", "label": "neg"}], r"labels.jsonl: line 2: the text of line 1 again"),
    ([{"text": "a", "label": "pos"}, {"text": "b", "probs": [0.5, 0.5]}], r"labels.jsonl: line 2: 'probs' where earlier rows give 'label'"),
    ([{"text": "a"}], r"labels.jsonl: line 1: expected exactly one of label, probs, logits"),
    ([{"label": "pos"}], r"labels.jsonl: line 1: expected a row with a 'text' field"),
])
def test_a_bad_label_file_is_one_error_naming_the_line(tokenizer, tmp_path, rows, message):
    _write_jsonl(tmp_path / "labels.jsonl", rows)
    with pytest.raises(XDistilError, match=message):
        FileLabeler(tmp_path / "labels.jsonl", LABELS, tokenizer)


def test_a_label_file_missing_texts_or_holding_others_is_refused(tokenizer, tmp_path):
    _write_jsonl(tmp_path / "labels.jsonl", [{"text": t, "label": "pos"} for t in TEXTS[:4]] + [{"text": "not in the data", "label": "neg"}])
    labeler = FileLabeler(tmp_path / "labels.jsonl", LABELS, tokenizer)
    with pytest.raises(XDistilError, match=r"labels.jsonl: 1 of the texts to label are not in the file \(first: 'text number 4"):
        labeler.check_covers(TEXTS[:5])
    with pytest.raises(XDistilError, match=r"labels.jsonl: 1 row\(s\) label texts that are not in the run's data \(first: line 5"):
        labeler.check_covers(TEXTS[:4])
    with pytest.raises(XDistilError, match="1 of the texts to label are not in the file"):
        annotate(labeler, iter(TEXTS[:5]), 5, tmp_path / "c", SPEC, "fp")
    assert not list((tmp_path / "c").glob("chunk-*.safetensors"))  # nothing half-labeled was written


def test_a_labeler_giving_other_tensors_than_the_cache_holds_is_refused(tokenizer, tmp_path):
    labeler = FunctionLabeler(probabilities, "no repr", LABELS, tokenizer)
    with_repr = AnnotationSpec(16, 8, 5, None, None, "float32")  # a cache that expects representations
    with pytest.raises(XDistilError, match=r"the labeler gave \['input_ids', 'lengths', 'logits'\] for a cache of \['input_ids', 'lengths', 'logits', 'repr'\]"):
        annotate(labeler, iter(TEXTS[:5]), 5, tmp_path / "c", with_repr, "fp")


def test_an_ensembles_targets_are_the_weighted_mean_of_its_members(tokenizer, tmp_path):
    from xdistil.transfer.labelers import EnsembleLabeler

    unsure = lambda texts: [[0.5, 0.5]] * len(texts)  # noqa: E731
    members = [FunctionLabeler(probabilities, "a", LABELS, tokenizer), FunctionLabeler(unsure, "b", LABELS, tokenizer)]
    mean = 0.75 * np.asarray(probabilities(TEXTS)) + 0.25 * np.asarray(unsure(TEXTS))
    rows = annotate(EnsembleLabeler(members, weights=[3, 1]), iter(TEXTS), len(TEXTS), tmp_path / "probs", SPEC, "fp").load()
    assert np.allclose(np.exp(rows.logits), mean, atol=1e-6)
    assert [r.tolist() for r in rows.ids] == tokenizer(TEXTS, truncation=True, max_length=16)["input_ids"]
    by_logits = annotate(EnsembleLabeler(members, combine="logits"), iter(TEXTS), len(TEXTS), tmp_path / "logits", SPEC, "fp").load()
    expected = (np.log(np.asarray(probabilities(TEXTS))) + np.log(np.asarray(unsure(TEXTS)))) / 2
    assert np.allclose(by_logits.logits, expected, atol=1e-6)
    assert EnsembleLabeler(members).fingerprint != EnsembleLabeler(members[::-1], weights=[3, 1]).fingerprint
    with pytest.raises(XDistilError, match="at least two members"):
        EnsembleLabeler(members[:1])
    with pytest.raises(XDistilError, match="one non-negative weight per member"):
        EnsembleLabeler(members, weights=[1, -1])


# ---- in the pipeline: teacher.source file and function ----
SHORT = {"distill__stages": [{"name": "soft", "losses": {"soft": 1.0}, "epochs": 2}, {"name": "gold", "losses": {"gold": 1.0}, "data": "labeled", "epochs": 1}],
         "evaluation": {"baseline": False, "latency_batch_sizes": [1], "latency_repeats": 2}}


def keyword_labels(texts: list[str]) -> list[str]:
    """The labeling function of the pipeline test (`teacher.function: test_labelers:keyword_labels`): a keyword rule."""
    from conftest import POSITIVE

    return ["pos" if any(word in POSITIVE for word in text.split()) else "neg" for text in texts]


def test_a_file_holding_the_teachers_logits_reproduces_the_in_process_student(tiny_teacher, sentiment_files, tmp_path):
    from safetensors.torch import load_file

    from conftest import tiny_run_config
    from xdistil.pipeline import Run

    made = Run(tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "model", **SHORT)).execute()
    rows = {}
    for name, (texts, _, _) in made.transfer.parts().items():
        for text, logits in zip(texts, made.annotation.caches[name].load().logits):
            rows.setdefault(text, logits.tolist())
    labels = tmp_path / "labels.jsonl"
    _write_jsonl(labels, [{"text": text, "logits": logits} for text, logits in rows.items()])
    config = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "file", teacher__model=str(tmp_path / "model" / "teacher"),
                             teacher__source="file", teacher__labels=str(labels), **SHORT)
    metrics = Run(config).run()
    assert metrics["run"]["labels"] == f"file {labels}" and metrics["stages"]["teacher"] == []  # nothing fine-tuned
    assert metrics["teacher"]["accuracy"] == made.metrics["teacher"]["accuracy"]
    assert metrics["student"]["accuracy"] == made.metrics["student"]["accuracy"]
    ours, theirs = load_file(tmp_path / "file" / "student" / "model.safetensors"), load_file(tmp_path / "model" / "student" / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(bool((ours[k] == theirs[k]).all()) for k in ours)
    assert "Labels from file" in (tmp_path / "file" / "report.md").read_text()


def test_a_function_labels_the_run_and_a_second_run_calls_it_for_nothing(tiny_teacher, sentiment_files, tmp_path, monkeypatch):
    import numpy as np

    from conftest import tiny_run_config
    import test_labelers
    from xdistil.pipeline import Run

    calls: list[int] = []
    rule = test_labelers.keyword_labels
    monkeypatch.setattr(test_labelers, "keyword_labels", lambda texts: calls.append(len(texts)) or rule(texts))
    config = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "run", teacher__source="function",
                             teacher__function="test_labelers:keyword_labels", teacher__outputs="labels", **SHORT)
    made = Run(config).execute()
    assert sum(calls) == sum(len(c) for c in made.annotation.caches.values())  # every text once: train, transfer, dev, test
    test_labels = made.annotation.caches["test"].load().logits.argmax(1)
    truth = np.asarray(made.data.corpus.test.labels)
    assert made.metrics["teacher"]["accuracy"] == float((test_labels == truth).mean()) == 1.0  # the keyword rule is right here
    assert made.metrics["run"]["labels"] == "function test_labelers:keyword_labels"
    calls.clear()
    Run(config).run()
    assert calls == []  # every chunk was cached


def test_stages_a_file_or_function_cannot_feed_are_refused_when_the_config_is_read(tiny_teacher, sentiment_files, tmp_path):
    from conftest import tiny_run_config

    with pytest.raises(XDistilError, match=r"distill.stages\[0\] \('representation'\): the 'representation' loss needs the teacher's "
                                           r"representations, which teacher.source function does not give"):
        tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "r", teacher__source="function", teacher__function="test_labelers:keyword_labels")
    with pytest.raises(XDistilError, match="teacher.source is file: give teacher.labels"):
        tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "r", teacher__source="file", **SHORT)
    with pytest.raises(XDistilError, match="teacher.labels is set but teacher.source is model; set teacher.source: file"):
        tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "r", teacher__labels="labels.jsonl", **SHORT)
