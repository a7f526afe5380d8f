"""A new task added from outside the package: sentence-pair classification (two texts in, one label out).

The task module and its reader live in this file alone - a description (how two texts become one input:
the tokenizer's own [CLS] a [SEP] b [SEP]), a task object reusing classification's head, fine-tuning and
metrics, and a reader for CSV rows of `text`, `text_pair`, `label` - and nothing in `src/` names it. The whole
pipeline runs on it; the saved student predicts pairs; its ONNX export agrees with it.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from conftest import make_sentence, tiny_run_config
from xdistil.data.corpus import labeled_corpus
from xdistil.data.readers import Table, read_labeled
from xdistil.tasks import get_task, register_task
from xdistil.tasks.classification import Classification
from xdistil.tasks.description import CLASSIFICATION, TaskDescription
from xdistil.text import tokenize
from xdistil.transfer.annotators import classify_chunk, classify_tokens

SOURCE = Path(__file__).resolve().parents[1] / "src" / "xdistil"
SEPARATOR = "\t"  # a pair inside the corpus and the transfer files: "first<TAB>second"


# ---- the task module ----
def _pair(item) -> tuple[str, str]:
    first, second = item.split(SEPARATOR, 1) if isinstance(item, str) else item
    return first, second


@dataclass(frozen=True)
class PairDescription(TaskDescription):
    def encode(self, tokenizer, items, max_length):
        firsts, seconds = zip(*map(_pair, items)) if items else ((), ())
        return tokenize(tokenizer, firsts, max_length, seconds)


PAIRS = PairDescription(**{
    **{f.name: getattr(CLASSIFICATION, f.name) for f in fields(CLASSIFICATION)},
    "name": "pair-classification", "noun": "sentence-pair classifier", "example_unit": "pairs", "loyalty_unit": "pairs",
    "usage": '[("a first text", "a second text")]', "intended_use": "Labeling pairs of texts", "augmentable": False,
})


class PairClassification(Classification):
    description = PAIRS
    annotator = staticmethod(partial(classify_chunk, encode=PAIRS.encode))
    token_annotator = staticmethod(partial(classify_tokens, encode=PAIRS.encode))

    def load_corpus(self, config):
        def read(path):
            if path is None:
                return None
            first, second = read_labeled(path, "text", "label"), read_labeled(path, "text_pair", "label")
            return Table(first.path, [f"{a}{SEPARATOR}{b}" for a, b in zip(first.texts, second.texts)], first.labels)

        return labeled_corpus(read(config.train), read(config.dev), read(config.test), config, [])


register_task(PairClassification())


# ---- data: the label is the sentiment of the second text; the first is a distractor of either sentiment ----
def _rows(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        rows.append((make_sentence(rng, rng.choice(["pos", "neg"])), make_sentence(rng, label), label))
    return rows


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory) -> dict[str, Path]:
    folder, rng = tmp_path_factory.mktemp("pairs"), random.Random(11)
    files = {}
    for name, n in (("train", 160), ("dev", 60), ("test", 80)):
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "text_pair", "label"])
            writer.writerows(_rows(rng, n))
        files[name] = folder / f"{name}.csv"
    files["transfer"] = folder / "transfer.txt"
    files["transfer"].write_text("\n".join(f"{a}{SEPARATOR}{b}" for a, b, _ in _rows(rng, 600)) + "\n", encoding="utf-8")
    return files


@pytest.fixture(scope="module")
def pair_run(tiny_teacher, pair_files, tmp_path_factory):
    from xdistil.pipeline import Run

    out = tmp_path_factory.mktemp("pair_run") / "run"
    config = tiny_run_config(tiny_teacher, pair_files, out, task="pair-classification")
    return config, out, Run(config).run()


def test_nothing_in_the_package_names_the_new_task():
    assert [p.name for p in SOURCE.rglob("*.py") if "pair-classification" in p.read_text()] == []
    assert get_task("pair-classification").description is PAIRS


def test_the_whole_pipeline_runs_the_pair_task_and_feeds_both_texts_as_one_input(pair_run, tiny_teacher):
    from transformers import AutoTokenizer

    from xdistil.transfer.cache import TransferCache

    _, out, metrics = pair_run
    assert metrics["task"] == "pair-classification" and metrics["primary_metric"] == "accuracy"
    assert 0 <= metrics["student"]["accuracy"] <= 1 and metrics["teacher"]["accuracy"] > 0.5
    assert json.loads((out / "student" / "config.json").read_text())["task"] == "pair-classification"
    assert "80 pairs" in (out / "report.md").read_text()
    assert "sentence-pair classifier" in (out / "student" / "README.md").read_text()
    sep = AutoTokenizer.from_pretrained(str(tiny_teacher)).sep_token_id
    rows = TransferCache(out / "cache" / "test").load()
    assert all(list(ids).count(sep) == 2 for ids in rows.ids)  # [CLS] first [SEP] second [SEP]


def test_the_saved_student_predicts_pairs_and_its_onnx_export_agrees(pair_run, pair_files, tmp_path):
    from xdistil import load_student
    from xdistil.export.onnx import export_onnx
    from xdistil.export.runtime import OnnxStudent

    _, out, metrics = pair_run
    student = load_student(out / "student")
    assert student.task is PAIRS
    with open(pair_files["test"], encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    pairs = [(r["text"], r["text_pair"]) for r in rows]
    predicted = student.predict(pairs)
    assert sum(p == r["label"] for p, r in zip(predicted, rows)) / len(rows) == pytest.approx(metrics["student"]["accuracy"])
    assert student.predict([f"{a}{SEPARATOR}{b}" for a, b in pairs]) == predicted  # the corpus' own form reads the same
    swapped = student.predict_proba([(b, a) for a, b in pairs[:20]])
    assert not np.allclose(swapped, student.predict_proba(pairs[:20]))  # the order of the two texts matters
    exported = OnnxStudent(export_onnx(out, tmp_path / "onnx"))
    assert exported.task is PAIRS
    assert np.abs(exported.predict_proba(pairs) - student.predict_proba(pairs)).max() < 1e-5
    assert exported.predict(pairs) == predicted


def test_the_cli_finds_the_task_through_a_package_entry_point(pair_run, pair_files, tmp_path):
    """A task of an installed package is found by name (its `xdistil.tasks` entry point), so `xdistil predict`
    in a fresh process loads the pair student; without the package, one clear line."""
    import os
    import subprocess
    import sys

    from test_cli import assert_one_line_error

    from xdistil import load_student

    _, out, _ = pair_run
    info = tmp_path / "site" / "pair_task-0.1.dist-info"  # what `pip install` of a package declaring the entry point leaves
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pair-task\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[xdistil.tasks]\npair-classification = test_new_task:PairClassification\n"
                                           "pair-renamed = pair_plugin:Renamed\n", encoding="utf-8")
    (info.parent / "pair_plugin.py").write_text(  # a task class whose module does not register it: the entry point does
        "from dataclasses import replace\nfrom test_new_task import PAIRS, PairClassification\n\n\n"
        "class Renamed(PairClassification):\n    description = replace(PAIRS, name='pair-renamed')\n", encoding="utf-8")
    with open(pair_files["test"], encoding="utf-8") as handle:
        pairs = [(r["text"], r["text_pair"]) for r in csv.DictReader(handle)][:12]
    given = tmp_path / "pairs.txt"
    given.write_text("".join(f"{a}{SEPARATOR}{b}\n" for a, b in pairs), encoding="utf-8")

    def python(args: list[str], *paths: Path) -> subprocess.CompletedProcess:
        env = {**os.environ, "XDISTIL_QUIET": "1", "PYTHONPATH": os.pathsep.join(map(str, paths))}
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=600)

    def predict(*paths: Path) -> subprocess.CompletedProcess:
        return python(["-m", "xdistil", "predict", str(out / "student"), "--input", str(given)], *paths)

    found = predict(info.parent, Path(__file__).parent)
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines() == load_student(out / "student").predict(pairs)
    assert_one_line_error(predict(Path(__file__).parent), "unknown task 'pair-classification'", "xdistil.tasks")
    renamed = python(["-c", "from xdistil.tasks import describe, get_task; describe('pair-renamed'); "
                      "print(type(get_task('pair-renamed')).__name__, get_task('pair-renamed').name)"], info.parent, Path(__file__).parent)
    assert renamed.stdout.split() == ["Renamed", "pair-renamed"], renamed.stderr
