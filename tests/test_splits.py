"""Splits are seeded, grouped splits never share a group, and label problems are clear errors."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import pytest

from conftest import write_csv
from xdistil.config import DataConfig
from xdistil.data.corpus import load_corpus, split_sentences
from xdistil.data.splits import carve
from xdistil.errors import XDistilError


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=80), st.integers(0, 80), st.integers(0, 10**6))
def test_grouped_carve_partitions_and_keeps_groups_whole(groups, size, seed):
    carved, rest = carve(len(groups), size, seed, groups)
    assert sorted(carved + rest) == list(range(len(groups)))
    assert not {groups[i] for i in carved} & {groups[i] for i in rest}
    assert len(carved) >= min(size, len(groups))
    assert carve(len(groups), size, seed, groups) == (carved, rest)


def test_exact_carve_cuts_the_last_group():
    groups = ["a"] * 5 + ["b"] * 5
    carved, rest = carve(10, 7, 0, groups, exact=True)
    assert len(carved) == 7 and len(rest) == 3


def test_corpus_carves_dev_and_test_by_group_and_moves_surplus_to_transfer(tmp_path):
    rows = [(f"text {i} of movie {i % 20}", "pos" if i % 2 else "neg", f"m{i % 20}") for i in range(200)]
    path = tmp_path / "all.csv"
    with open(path, "w") as handle:
        handle.write("text,label,movie\n" + "".join(f"{t},{l},{m}\n" for t, l, m in rows))
    config = DataConfig(train=path, group_column="movie", test_size=40, dev_size=20, train_size=50)
    corpus = load_corpus(config)
    assert len(corpus.train) == 50
    assert len(corpus.test) >= 40 and len(corpus.dev) >= 20
    movie = {t: m for t, _, m in rows}
    test_movies = {movie[t] for t in corpus.test.texts}
    assert not test_movies & {movie[t] for t in corpus.train.texts + corpus.dev.texts + list(corpus.transfer)}
    assert len(corpus.train) + len(corpus.dev) + len(corpus.test) + len(corpus.transfer) == 200
    assert corpus.label_names == ["neg", "pos"]
    assert load_corpus(config).train.texts == corpus.train.texts


def test_label_unseen_in_train_is_an_error(tmp_path):
    train = write_csv(tmp_path / "train.csv", [("a", "pos"), ("b", "neg")])
    test = write_csv(tmp_path / "test.csv", [("c", "pos"), ("d", "meh")])
    with pytest.raises(XDistilError, match=r"test.csv: test label 'meh' \(example 2\) never occurs in train"):
        load_corpus(DataConfig(train=train, dev=train, test=test))


def test_single_class_train_is_an_error(tmp_path):
    train = write_csv(tmp_path / "train.csv", [("a", "pos"), ("b", "pos")])
    with pytest.raises(XDistilError, match="single class 'pos'"):
        load_corpus(DataConfig(train=train, dev=train, test=train))


def test_sentence_splitting_keeps_short_fragments_attached():
    text = "A man walks in. He sits. Then the bank is robbed by three blind men! What next?"
    assert split_sentences(text) == ["A man walks in. He sits.", "Then the bank is robbed by three blind men! What next?"]


def test_datasets_path_reads_splits_and_class_label_names(tmp_path):
    """`data.dataset` goes through datasets.load_dataset: a local folder stands in for a hub name here."""
    folder = tmp_path / "hubset"
    folder.mkdir()
    write_csv(folder / "train.csv", [(f"good {i}", "pos") for i in range(6)] + [(f"bad {i}", "neg") for i in range(6)])
    write_csv(folder / "test.csv", [("good x", "pos"), ("bad y", "neg")])
    corpus = load_corpus(DataConfig(dataset=str(folder), dev_size=0.25))
    assert corpus.label_names == ["neg", "pos"]
    assert len(corpus.test) == 2 and len(corpus.dev) == 3 and len(corpus.train) == 9
    with pytest.raises(XDistilError, match="could not load from the hub"):
        load_corpus(DataConfig(dataset=str(tmp_path / "no_such_dataset")))
