"""A labeling budget: the labeler labels at most N transfer texts, chosen at random or to cover the embedding space."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import tiny_run_config
from xdistil.config import TransferConfig
from xdistil.errors import XDistilError
from xdistil.pipeline import Run
from xdistil.transfer.budget import budget_count, choose_diverse, choose_random, first_round_count, least_sure
from xdistil.transfer.cache import MANIFEST

SHORT = {"distill__stages": [{"name": "soft", "losses": {"soft": 1.0}, "epochs": 2}, {"name": "gold", "losses": {"gold": 1.0}, "data": "labeled", "epochs": 1}],
         "evaluation": {"baseline": False, "latency_batch_sizes": [1], "latency_repeats": 2}}


def test_a_budget_is_a_count_or_a_fraction_and_never_more_than_the_pool():
    assert budget_count(50, 300) == 50 and budget_count(500, 300) == 300 and budget_count(0.25, 300) == 75 and budget_count(1.0, 7) == 7
    assert TransferConfig(budget=0.1).budget == 0.1 and TransferConfig(budget=10).budget == 10
    with pytest.raises(ValueError, match="a fractional budget is between 0 and 1"):
        TransferConfig(budget=1.5)
    with pytest.raises(ValueError, match="0 or more"):
        TransferConfig(budget=-3)
    chosen = choose_random(300, 40, seed=1)
    assert len(chosen) == 40 == len(set(chosen.tolist())) and list(chosen) == sorted(chosen) and chosen.max() < 300
    assert np.array_equal(chosen, choose_random(300, 40, seed=1)) and not np.array_equal(chosen, choose_random(300, 40, seed=2))


def test_a_diverse_budget_takes_from_every_cluster_in_proportion():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    sizes = [60, 30, 10]
    points = np.concatenate([c + rng.normal(size=(n, 2)) for c, n in zip(centres, sizes)]).astype(np.float32)
    cluster_of = np.repeat(np.arange(3), sizes)
    chosen = choose_diverse(points, 10, seed=3)
    assert len(chosen) == 10 and np.array_equal(chosen, choose_diverse(points, 10, seed=3))
    per_blob = np.bincount(cluster_of[chosen], minlength=3)
    assert per_blob.min() >= 1 and per_blob[0] > per_blob[2]  # a random draw of 10 misses the small blob a third of the time
    for seed in range(5):  # three texts: one from each blob, whatever the seed
        assert sorted(cluster_of[choose_diverse(points, 3, seed=seed)].tolist()) == [0, 1, 2]
    assert choose_diverse(points, 100, seed=3).tolist() == list(range(100))


def test_an_uncertain_budget_ends_its_first_round_on_a_chunk_boundary_and_then_takes_the_least_sure():
    assert first_round_count(75, 40, 64) == 24  # 40 train rows + 24 = one whole chunk of 64
    assert first_round_count(1000, 1000, 512) == 536  # 1,536 rows: the boundary nearest half the budget
    assert first_round_count(10, 40, 64) == 10  # no boundary inside: all in one round
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, size=(400, 2)).astype(np.float32)
    first = np.arange(100)
    probabilities = 1 / (1 + np.exp(-8 * points[first, 0]))  # the labeler: class 1 where x > 0, surer further away
    second = least_sure(points, first, np.stack([1 - probabilities, probabilities], 1), 30, seed=1)
    assert len(second) == 30 and not set(second.tolist()) & set(first.tolist()) and list(second) == sorted(second)
    rest = np.arange(100, 400)
    nearest = rest[np.argsort(np.abs(points[rest, 0]))[:30]]  # the 30 texts closest to the boundary
    assert len(set(second.tolist()) & set(nearest.tolist())) >= 24
    assert np.abs(points[second, 0]).max() < np.median(np.abs(points[rest, 0]))


@pytest.mark.parametrize("strategy", ["random", "diverse", "uncertain"])
def test_a_budget_labels_no_more_than_n_transfer_texts_and_the_student_learns_from_them_alone(tiny_teacher, sentiment_files, tmp_path,
                                                                                              monkeypatch, strategy):
    import test_labelers

    calls: list[str] = []
    rule = test_labelers.keyword_labels
    monkeypatch.setattr(test_labelers, "keyword_labels", lambda texts: calls.extend(texts) or rule(texts))
    config = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "run", teacher__source="function",
                             teacher__function="test_labelers:keyword_labels", teacher__outputs="labels",
                             transfer={"chunk_size": 64, "batch_size": 32, "budget": 0.25, "budget_strategy": strategy}, **SHORT)
    made = Run(config).execute()
    corpus = made.data.corpus
    transfer = list(corpus.transfer)
    labeled = [text for text in calls if text in set(transfer) - set(corpus.train.texts + corpus.dev.texts + corpus.test.texts)]
    assert len(labeled) == 75  # a quarter of the 300 transfer texts, each once
    assert len(made.annotation.caches["transfer"]) == len(corpus.train) + 75  # the student trains on those alone
    saved = json.loads((tmp_path / "run" / "cache" / "budget.json").read_text())
    assert saved["strategy"] == strategy and saved["pool"] == 300 and saved["labeled"] == 75
    if strategy == "uncertain":  # the first round ends on a chunk boundary of the cache: its texts were not labeled again
        first, second = saved["rounds"]
        assert first + second == 75 and (len(corpus.train) + first) % 64 == 0 and 0 < first < 75
    assert sorted(labeled) == sorted(transfer[i] for i in saved["positions"])
    assert made.metrics["data"]["transfer_labeled"] == 75
    assert "a labeling budget labeled 75 of the 300" in (tmp_path / "run" / "report.md").read_text()
    manifest = made.annotation.caches["transfer"].folder / MANIFEST
    written = manifest.stat().st_mtime_ns
    calls.clear()
    Run(config).run()
    assert calls == []  # the same budget chooses the same texts: all cached
    assert manifest.stat().st_mtime_ns == written  # a finished cache is read, not rewritten (uncertain's first round included)


@pytest.mark.parametrize("strategy", ["random", "uncertain"])
def test_a_label_file_holding_every_text_serves_a_budget_that_labels_only_part_of_them(tiny_teacher, sentiment_files, tmp_path, strategy):
    import test_labelers

    function = {"teacher__source": "function", "teacher__function": "test_labelers:keyword_labels", "teacher__outputs": "labels"}
    made = Run(tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "all", **function, **SHORT)).execute("annotate")
    corpus = made.data.corpus
    texts = list(dict.fromkeys([*corpus.train.texts, *corpus.dev.texts, *corpus.test.texts, *corpus.transfer]))
    labels = tmp_path / "labels.jsonl"
    test_labelers._write_jsonl(labels, [{"text": t, "label": label} for t, label in zip(texts, test_labelers.keyword_labels(texts))])
    config = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "budget", teacher__source="file", teacher__labels=str(labels),
                             transfer={"chunk_size": 64, "batch_size": 32, "budget": 0.25, "budget_strategy": strategy}, **SHORT)
    budgeted = Run(config).execute()  # the file's rows for the texts the budget leaves out are the run's texts, not foreign ones
    assert len(budgeted.annotation.caches["transfer"]) == len(corpus.train) + 75
    with open(labels, "a", encoding="utf-8") as handle:  # a text from outside the run is still refused, in one line
        handle.write(json.dumps({"text": "a text no split holds", "label": "pos"}) + "\n")
    with pytest.raises(XDistilError, match="1 row\\(s\\) label texts that are not in the run's data"):
        Run(tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "foreign", teacher__source="file", teacher__labels=str(labels),
                            transfer={"chunk_size": 64, "batch_size": 32, "budget": 0.25, "budget_strategy": strategy}, **SHORT)).execute("annotate")
