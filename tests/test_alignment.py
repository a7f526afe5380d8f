"""Word <-> piece alignment, teacher windows for long sentences and their stitching, tagging metrics."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from conftest import PEOPLE, PLACES
from xdistil.evaluation.metrics import tagging_metrics
from xdistil.teacher.alignment import pieces_to_words, plan_windows, windows_for, words_to_pieces
from xdistil.teacher.inference import tagger_outputs
from xdistil.text import IGNORE, EncodedSentence, encode_words

# known words, words split into two pieces (name + "##s"), unknown words and a character the tokenizer drops
WORDS = st.sampled_from(PEOPLE + PLACES + [p + "s" for p in PEOPLE] + ["zzqx", "unseen", "\u200b"])


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher):
    return AutoTokenizer.from_pretrained(str(tiny_teacher))


@settings(max_examples=60, deadline=None)
@given(sentence=st.lists(WORDS, min_size=1, max_size=30), data=st.data())
def test_word_labels_survive_the_round_trip_through_pieces(tokenizer, sentence, data):
    labels = np.asarray(data.draw(st.lists(st.integers(0, 4), min_size=len(sentence), max_size=len(sentence))))
    (encoded,) = encode_words(tokenizer, [sentence])
    assert len(encoded) == len(sentence) and all(encoded.pieces)  # every word keeps a position, even a dropped one
    ids, starts = encoded.ids, encoded.starts
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    per_piece = words_to_pieces(labels, starts, len(ids), IGNORE)
    assert (per_piece != IGNORE).sum() == len(sentence)  # only first pieces carry a label
    assert np.array_equal(pieces_to_words(per_piece, starts), labels)


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(1, 12), min_size=1, max_size=80), budget=st.integers(4, 40))
def test_windows_cover_every_word_within_budget_and_keep_each_word_once(counts, budget):
    windows = plan_windows(counts, budget)
    assert windows[0][0] == 0 and windows[-1][1] == len(counts)
    for start, stop in windows:
        assert stop - start == 1 or sum(counts[start:stop]) <= budget
    for (a, b), (c, d) in zip(windows, windows[1:]):
        assert a < c <= b  # overlapping or adjacent, always moving on
    kept = []

    planned, split = windows_for([EncodedSentence([[1] * c for c in counts], [2], [3])], budget + 2)
    for w in planned:
        assert w.start <= w.keep_start <= w.keep_stop <= w.stop
        kept.extend(range(w.keep_start, w.keep_stop))
    assert kept == list(range(len(counts)))
    assert split == (len(planned) > 1)


class PositionFreeTagger(torch.nn.Module):
    """Logits and hidden states that depend on the token id alone, so windowing must not change them."""

    def __init__(self, vocab: int):
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Embedding(vocab, 5)

    def forward(self, input_ids, attention_mask, output_hidden_states=False):
        values = self.table(input_ids)
        return SimpleNamespace(logits=values[..., :3], hidden_states=[values, values * 2])


def test_long_sentences_are_split_for_the_teacher_and_stitched_back_whole(tokenizer):
    long = (PEOPLE + PLACES + [p + "s" for p in PEOPLE]) * 5  # 90 words, 96 pieces
    short = ["alice", "met", "bob"]
    encoded = encode_words(tokenizer, [long, short])
    model = PositionFreeTagger(len(tokenizer))
    whole, whole_reps, split_whole = tagger_outputs(model, encoded, tokenizer.pad_token_id, 4, 512, 1)
    windowed, windowed_reps, split = tagger_outputs(model, encoded, tokenizer.pad_token_id, 4, 16, 1)
    assert split_whole == 0 and split == 1  # the long sentence was split, and counted
    for a, b, n in zip(whole, windowed, (len(long), len(short))):
        assert a.shape == b.shape == (n, 3)
        assert np.allclose(a, b)
    assert np.allclose(whole_reps[0], windowed_reps[0])
    expected = model.table(torch.as_tensor(encoded[0].ids[encoded[0].starts].astype(np.int64)))[:, :3].detach().numpy()
    assert np.allclose(whole[0], expected)  # read at each word's first piece


def test_tagging_metrics_per_language_and_mean():
    gold = [["B-PER", "I-PER", "O"], ["B-LOC", "O"], ["B-ORG", "O"]]
    predicted = [["B-PER", "I-PER", "O"], ["B-ORG", "O"], ["B-ORG", "O"]]
    result = tagging_metrics(predicted, gold, ["en", "fr", "fr"])
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["per_language_f1"] == {"en": 1.0, "fr": 0.5}  # fr: 1 of 2 found, 1 of 2 predicted right
    assert result["mean_language_f1"] == pytest.approx(0.75)  # unweighted over languages
    assert result["token_accuracy"] == pytest.approx(6 / 7)
    assert result["per_type"]["LOC"]["f1"] == 0.0 and result["per_type"]["PER"]["f1"] == 1.0
    assert "per_language_f1" not in tagging_metrics(predicted, gold, [None, None, None])
