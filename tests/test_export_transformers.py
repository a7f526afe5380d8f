"""`xdistil export RUN --format transformers`: a transformer student as a plain Hugging Face folder that
`transformers.pipeline` loads in a fresh process with no custom code, predicting what the student predicts."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_sentence, make_tagged, tiny_run_config
from test_cli import assert_one_line_error, xdistil

EVAL = {"evaluation": {"baseline": False, "latency_batch_sizes": []}}


def _run(tiny_teacher, files, out, task, pooling):
    from xdistil.pipeline import Run

    student = {"arch": "transformer", "encoder": "teacher", "layers": 1, "pooling": pooling}
    Run(tiny_run_config(tiny_teacher, files, out, task=task, student=student, **EVAL)).run(until="distill")
    return out


def _export(run, folder, inputs: list, path) -> None:
    """Export `run` to `folder` with the CLI, and save the inputs the fresh process reads."""
    exported = xdistil("export", str(run), "--format", "transformers", "--out", str(folder))
    assert exported.returncode == 0, exported.stderr
    path.write_text(json.dumps(inputs))


def _fresh(script: str) -> list:
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def pooler_run(tiny_teacher, sentiment_files, tmp_path_factory):
    return _run(tiny_teacher, sentiment_files, tmp_path_factory.mktemp("pooler") / "run", "classification", "pooler")


def test_a_classifier_loads_in_a_transformers_pipeline_and_agrees_with_the_student(pooler_run, tmp_path):
    from xdistil import load_student

    run = pooler_run
    folder, rng = run / "transformers", random.Random(5)  # the default --out
    texts = [make_sentence(rng, rng.choice(["pos", "neg"])) for _ in range(500)]
    _export(run, folder, texts, tmp_path / "texts.json")
    got = _fresh(
        "import json; from transformers import pipeline\n"
        f"texts = json.load(open({str(tmp_path / 'texts.json')!r}))\n"
        f"classify = pipeline('text-classification', model={str(folder)!r}, top_k=None)\n"
        "print(json.dumps([{r['label']: r['score'] for r in rows} for rows in classify(texts, batch_size=64)]))"
    )
    student = load_student(run / "student")
    theirs = np.asarray([[row[name] for name in student.label_names] for row in got])
    assert np.abs(theirs - student.predict_proba(texts)).max() < 1e-5
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "library_name: transformers" in card


def test_a_tagger_loads_as_a_token_classifier_and_agrees_word_by_word(tiny_teacher, tagging_files, tmp_path):
    from xdistil import load_student

    run = _run(tiny_teacher, tagging_files, tmp_path / "run", "tagging", "mean")
    rng = random.Random(9)
    sentences = [make_tagged(rng, rng.choice([3, 6, 9]))[0] for _ in range(500)]
    _export(run, tmp_path / "plain", sentences, tmp_path / "sentences.json")
    got = _fresh(
        "import json, torch; from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline\n"
        f"folder = {str(tmp_path / 'plain')!r}\n"
        f"sentences = json.load(open({str(tmp_path / 'sentences.json')!r}))\n"
        "pipeline('token-classification', model=folder)(' '.join(sentences[0]))  # loads and runs as a stock pipeline\n"
        "tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForTokenClassification.from_pretrained(folder).eval()\n"
        "labels, out = [model.config.id2label[i] for i in range(model.config.num_labels)], []\n"
        "with torch.inference_mode():\n"
        "    for words in sentences:\n"
        "        enc = tok(words, is_split_into_words=True, return_tensors='pt', truncation=True)\n"
        "        probs, seen, rows = model(**enc).logits.softmax(-1)[0], set(), []\n"
        "        for i, w in enumerate(enc.word_ids()):\n"
        "            if w is not None and w not in seen:  # each word's first piece, as the student reads it\n"
        "                seen.add(w)\n"
        "                rows.append(probs[i].tolist())\n"
        "        out.append({'labels': labels, 'rows': rows})\n"
        "print(json.dumps(out))"
    )
    student = load_student(run / "student")
    for sentence, ours, theirs in zip(sentences, student.predict_proba(sentences), got):
        order = [theirs["labels"].index(name) for name in student.label_names]
        assert np.abs(np.asarray(theirs["rows"])[:, order] - ours).max() < 1e-5, sentence


def test_students_without_a_stock_layout_are_refused_in_one_line(tiny_teacher, sentiment_files, tmp_path):
    from xdistil.pipeline import Run

    mean = _run(tiny_teacher, sentiment_files, tmp_path / "mean", "classification", "mean")
    assert_one_line_error(xdistil("export", str(mean), "--format", "transformers"), "pools with 'mean'", "student.pooling: pooler")
    Run(tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "bilstm", **EVAL)).run(until="distill")
    assert_one_line_error(xdistil("export", str(tmp_path / "bilstm"), "--format", "transformers"), "a bilstm student ships as ONNX")
    assert not (tmp_path / "mean" / "transformers").exists()


def test_a_pooler_student_keeps_the_encoders_pooler_and_trains_it_with_the_head(pooler_run):
    from xdistil import load_student

    student = load_student(pooler_run / "student").model
    assert student.encoder.pooler is not None
    output = {id(p) for p in student.layer_groups()["output"]}
    assert all(id(p) in output for p in student.encoder.pooler.parameters())
