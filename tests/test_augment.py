"""Transfer-set augmentation at scale: seeded, never a real text, streamed, with neighbour replacement,
and an augmented annotation that resumes chunk by chunk."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from transformers import AutoTokenizer

from conftest import make_sentence, tiny_run_config
from xdistil.config import AugmentConfig
from xdistil.errors import XDistilError
from xdistil.pipeline import Run
from xdistil.transfer.augment import WordPool, augment_stream, digest, file_word_vectors, nearest_words, teacher_word_vectors


def sentences(n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    return [make_sentence(rng, rng.choice(["pos", "neg"])) for _ in range(n)]


def test_augmentation_is_seeded_new_and_never_a_real_text():
    texts = sentences(200)
    held_out = sentences(50, seed=9)  # dev and test texts: never emitted
    config = AugmentConfig(factor=6, p_mask=0.0, p_swap=0.5, p_ngram=0.0)
    real = {digest(t) for t in texts + held_out}

    def run(seed: int) -> list[str]:
        return list(augment_stream(texts, config, "[MASK]", seed, WordPool(texts), lambda: real))

    first = run(1)
    assert first == run(1) and first != run(2)
    assert len(first) == len(set(first))  # no text twice, across the whole stream
    assert not set(first) & set(texts + held_out)
    # a held-out text one swap away is emitted when nothing excludes it, and left out when the exclusion holds it
    held, source = "alpha beta gamma delta", "alpha beta gamma omega"
    swaps = AugmentConfig(factor=20, p_mask=0.0, p_swap=0.25, p_ngram=0.0)
    pool = WordPool([held])
    free = list(augment_stream([source] * 50, swaps, "[MASK]", 3, pool))
    guarded = list(augment_stream([source] * 50, swaps, "[MASK]", 3, pool, lambda: {digest(held)}))
    assert held in free and held not in guarded
    AugmentConfig(factor=20)
    with pytest.raises(ValueError, match="less than or equal to 20"):
        AugmentConfig(factor=21)

def test_augmentation_streams_from_a_bounded_window():
    pulled = 0

    def source():
        nonlocal pulled
        for text in itertools.cycle(sentences(100)):
            pulled += 1
            yield text

    config = AugmentConfig(factor=4)
    pool = WordPool(sentences(100))
    stream = augment_stream(source(), config, "[MASK]", 1, pool)  # an endless input: only a stream can answer at all
    taken = list(itertools.islice(stream, 1000))
    assert len(taken) == 1000
    assert pulled <= 1000  # each input text gives up to 4 new ones: ~250 pulled, never the whole input materialised


def test_nearest_words_are_by_cosine_and_never_the_word_itself():
    words = ["a", "b", "c", "d"]
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.05]])
    near = nearest_words(words, vectors, 2)
    assert near["a"] == ["b", "c"] and near["c"][0] == "b" and near["d"][0] == "c"
    assert all(word not in picks for word, picks in near.items())


def test_neighbours_from_the_teacher_table_and_from_a_vectors_file(tiny_teacher, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher))
    table = np.random.default_rng(0).normal(size=(len(tokenizer), 6)).astype(np.float32)
    kept, vectors = teacher_word_vectors(["film", "films", "zzzq", "movie"], tokenizer, table)
    assert kept == ["film", "movie"]  # "films" is two pieces (film ##s), "zzzq" unknown: no single piece
    assert np.array_equal(vectors[1], table[tokenizer.convert_tokens_to_ids("movie")])

    glove = tmp_path / "vectors.txt"
    glove.write_text("film 1 0 0\nmovie 0.9 0.1 0\nplot 0 1 0\n", encoding="utf-8")
    kept, vectors = file_word_vectors(glove, ["movie", "film", "absent"])
    assert kept == ["film", "movie"] and vectors.shape == (2, 3)
    glove.write_text("film 1 0 0\nmovie 0.9 x 0\n", encoding="utf-8")
    with pytest.raises(XDistilError, match=r"vectors.txt: line 2: expected a word followed by numbers"):
        file_word_vectors(glove, ["film", "movie"])
    glove.write_text("film 1 0 0\nmovie 0.9 0\n", encoding="utf-8")
    with pytest.raises(XDistilError, match=r"line 2: expected a word and 3 numbers, got 2"):
        file_word_vectors(glove, ["film", "movie"])


def _augmented_config(tiny_teacher, sentiment_files, out, **augment):
    return tiny_run_config(tiny_teacher, sentiment_files, out, transfer={"chunk_size": 100, "batch_size": 32,
                                                                         "augment": {"factor": 3, "replace": "neighbours", **augment}})


def test_a_killed_augmented_annotation_resumes_without_redoing_chunks(tiny_teacher, sentiment_files, tmp_path):
    made = Run(_augmented_config(tiny_teacher, sentiment_files, tmp_path / "run")).execute("annotate")
    stream = made.transfer
    sizes = stream.sizes()
    assert sizes["real"] == 300 and sizes["generated"] > 300
    cache = made.annotation.caches["transfer"]
    assert cache.manifest.get("precision", "").startswith("int8")  # auto: int8 on a CPU once the set more than doubles
    chunks = sorted(cache.folder.glob("chunk-*.safetensors"))
    assert len(chunks) > 4
    before = {p.name: p.read_bytes() for p in chunks}
    stamps = {p.name: p.stat().st_mtime_ns for p in chunks}
    for lost in chunks[-2:]:  # what a run killed before its last two chunks leaves: the finished ones, whole
        lost.unlink()
    again = Run(_augmented_config(tiny_teacher, sentiment_files, tmp_path / "run")).execute("annotate")
    after = sorted(again.annotation.caches["transfer"].folder.glob("chunk-*.safetensors"))
    assert {p.name: p.read_bytes() for p in after} == before  # the same texts, labeled the same
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in after[:-2])  # finished chunks were not redone
    texts = list(again.transfer)[60 + 300:]  # after the 60 train and 300 real transfer texts: the generated ones
    corpus = again.data.corpus
    assert len(texts) == sizes["generated"] and not set(texts) & set(corpus.dev.texts + corpus.test.texts + corpus.train.texts)


def test_the_report_says_how_many_transfer_texts_were_generated(tiny_teacher, sentiment_files, tmp_path):
    config = _augmented_config(tiny_teacher, sentiment_files, tmp_path / "run", replace="corpus", factor=1)
    metrics = Run(config).run()
    generated = metrics["data"]["transfer_generated"]
    assert 0 < generated <= 300 and metrics["data"]["transfer"] == 300
    report = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert f"300 real texts and {generated:,} generated by augmentation" in report
    card = (tmp_path / "run" / "student" / "README.md").read_text(encoding="utf-8")
    assert f"and {generated:,} generated from them by augmentation" in card
