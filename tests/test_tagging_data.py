"""Token-tagging readers: CoNLL and JSONL, scheme detection and conversion to IOB2."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdistil.data.tagging import detect_scheme, read_tagged, to_iob2
from xdistil.errors import XDistilError

IOB2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]


def test_iob1_and_bioes_become_iob2():
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "O", "I-ORG"]
    bioes = ["B-PER", "E-PER", "O", "S-LOC", "B-LOC", "E-LOC", "O", "S-ORG"]
    assert detect_scheme([iob1]) == "IOB1" and to_iob2(iob1, "IOB1") == IOB2
    assert detect_scheme([bioes]) == "BIOES" and to_iob2(bioes, "BIOES") == IOB2
    assert detect_scheme([IOB2]) == "IOB2" and to_iob2(IOB2, "IOB2") == IOB2


def test_conll_reads_sentences_skips_docstart_and_takes_the_last_column(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n")
    table = read_tagged(path)
    assert table.tokens == [["EU", "rejects"], ["Peter"]]
    assert table.tags == [["B-ORG", "O"], ["B-PER"]]
    assert table.entity_types() == ["ORG", "PER"]


def test_jsonl_with_languages_and_its_errors(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"tokens": ["Paris", "est"], "tags": ["S-LOC", "O"], "lang": "fr"}, {"tokens": ["Moscow"], "tags": ["S-LOC"], "lang": "ru"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    table = read_tagged(path)
    assert table.tags == [["B-LOC", "O"], ["B-LOC"]] and table.langs == ["fr", "ru"] and table.scheme == "BIOES"
    path.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n")
    with pytest.raises(XDistilError, match="line 1: 2 tokens but 1 tags"):
        read_tagged(path)


_types = st.sampled_from(["PER", "LOC", "ORG", "MISC"])


@st.composite
def iob2_sentences(draw):
    sentence = []
    for _ in range(draw(st.integers(1, 12))):
        choice = draw(st.integers(0, 2))
        if choice == 0 or not sentence or sentence[-1] == "O":
            sentence.append("O" if choice == 0 else f"B-{draw(_types)}")
        else:
            sentence.append(f"I-{sentence[-1][2:]}" if choice == 1 else f"B-{draw(_types)}")
    return sentence


@settings(max_examples=60, deadline=None)
@given(st.lists(iob2_sentences(), min_size=1, max_size=6))
def test_any_valid_conll_file_round_trips(tmp_path_factory, sentences):
    path = tmp_path_factory.mktemp("conll") / "data.conll"
    tokens = [[f"w{i}_{j}" for j in range(len(s))] for i, s in enumerate(sentences)]
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(ws, ts)) for ws, ts in zip(tokens, sentences)) + "\n")
    table = read_tagged(path)
    assert table.tokens == tokens and table.tags == sentences


def test_tagging_corpus_from_a_datasets_folder_converts_tags_and_carves_dev(tmp_path):
    """`data.dataset` for tagging goes through datasets.load_dataset (a local folder stands in for a hub name)."""
    import json

    from xdistil.config import DataConfig
    from xdistil.data.corpus import load_tagged_corpus

    folder = tmp_path / "nerset"
    folder.mkdir()
    rows = [{"tokens": ["Ann", "Lee", "saw", "Oslo"], "ner_tags": ["B-PER", "E-PER", "O", "S-LOC"]}] * 8
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "test.jsonl").write_text(json.dumps({"tokens": ["Oslo"], "ner_tags": ["S-LOC"]}) + "\n")
    corpus = load_tagged_corpus(DataConfig(dataset=str(folder), dev_size=2))
    assert corpus.label_names == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    names = corpus.label_names
    assert [names[i] for i in corpus.train.labels[0]] == ["B-PER", "I-PER", "O", "B-LOC"]  # BIOES -> IOB2
    assert len(corpus.train) == 6 and len(corpus.dev) == 2 and len(corpus.test) == 1
