"""Words <-> word pieces for tagging: the first piece of a word carries its label, the rest are ignored.

A sentence is encoded once into its full piece sequence (special tokens around, no length limit),
which the BiLSTM student reads whole. The teacher has a maximum length, so a longer sentence is
cut into overlapping windows of whole words; each word's teacher output is taken from the window
where it sits furthest from an edge, and the windows are stitched back into one row per word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class EncodedSentence:
    """A sentence as word pieces: `pieces[w]` are the teacher ids of word w (never empty)."""

    pieces: list[list[int]]
    prefix: list[int]
    suffix: list[int]

    def __len__(self) -> int:
        return len(self.pieces)

    def budget(self, max_length: int) -> int:
        """How many word pieces fit in one teacher input of `max_length` beside the special tokens."""
        return max_length - len(self.prefix) - len(self.suffix)

    @property
    def ids(self) -> np.ndarray:
        """The full sequence with special tokens, as the student reads it."""
        return np.asarray(self.prefix + [p for word in self.pieces for p in word] + self.suffix, dtype=np.int32)

    @property
    def starts(self) -> np.ndarray:
        """Position of each word's first piece in `ids`."""
        counts = np.fromiter((len(w) for w in self.pieces), dtype=np.int32, count=len(self.pieces))
        return (len(self.prefix) + np.concatenate([[0], np.cumsum(counts)[:-1]])).astype(np.int32)


@dataclass
class Window:
    """One teacher input: words [start, stop) of sentence `row`, whose outputs are kept for words [keep_start, keep_stop)."""

    row: int
    start: int
    stop: int
    keep_start: int
    keep_stop: int


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a sentence (e.g. [CLS] / [SEP], or <s> / </s>)."""
    encoding = tokenizer(["x"], is_split_into_words=True, add_special_tokens=True)
    ids, words = encoding["input_ids"], encoding.word_ids()
    first = words.index(0)
    last = len(words) - 1 - words[::-1].index(0)
    return ids[:first], ids[last + 1 :]


def encode_words(tokenizer, sentences: Sequence[Sequence[str]]) -> list[EncodedSentence]:
    """Word pieces per word for each sentence; a word the tokenizer drops entirely becomes [UNK]
    so that every word keeps a position (and its label)."""
    prefix, suffix = special_tokens(tokenizer)
    if not sentences:
        return []
    batch = tokenizer([list(s) for s in sentences], is_split_into_words=True, add_special_tokens=False)
    unk = tokenizer.unk_token_id
    encoded = []
    for row, sentence in enumerate(sentences):
        pieces: list[list[int]] = [[] for _ in sentence]
        for piece, word in zip(batch["input_ids"][row], batch.word_ids(row)):
            if word is not None:
                pieces[word].append(piece)
        encoded.append(EncodedSentence([p or [unk] for p in pieces], prefix, suffix))
    return encoded


def plan_windows(piece_counts: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Word ranges [start, stop) holding at most `budget` pieces each, every next window starting
    halfway through the previous one, so each word has context on both sides in some window.
    A single word longer than the budget gets a window of its own (its pieces are cut)."""
    n = len(piece_counts)
    if sum(piece_counts) <= budget:
        return [(0, n)]
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        stop, used = start, 0
        while stop < n and used + piece_counts[stop] <= budget:
            used += piece_counts[stop]
            stop += 1
        stop = max(stop, start + 1)
        windows.append((start, stop))
        if stop >= n:
            return windows
        start = max(start + 1, (start + stop) // 2)


def windows_for(encoded: Sequence[EncodedSentence], max_length: int) -> tuple[list[Window], int]:
    """Teacher windows for every sentence and how many sentences had to be split."""
    out: list[Window] = []
    split = 0
    for row, sentence in enumerate(encoded):
        ranges = plan_windows([len(p) for p in sentence.pieces], sentence.budget(max_length))
        split += len(ranges) > 1
        # each word is kept from the window where it is furthest from an edge: cut midway through each overlap
        cuts = [0] + [(ranges[i + 1][0] + ranges[i][1]) // 2 for i in range(len(ranges) - 1)] + [len(sentence)]
        for i, (start, stop) in enumerate(ranges):
            out.append(Window(row, start, stop, cuts[i], cuts[i + 1]))
    return out, split


def window_inputs(sentence: EncodedSentence, window: Window, max_length: int) -> tuple[list[int], list[int]]:
    """(teacher input ids, positions of the kept words' first pieces) for one window."""
    budget = sentence.budget(max_length)
    ids = list(sentence.prefix)
    positions = []
    for word in range(window.start, window.stop):
        if window.keep_start <= word < window.keep_stop:
            positions.append(len(ids))
        ids.extend(sentence.pieces[word][: budget - (len(ids) - len(sentence.prefix))])
    return ids + list(sentence.suffix), positions


def pieces_to_words(piece_values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Values at the first piece of each word (piece_values: (pieces, ...) over the full sequence)."""
    return piece_values[starts]


def words_to_pieces(word_values: np.ndarray, starts: np.ndarray, length: int, fill: int) -> np.ndarray:
    """A per-piece array of `length` holding each word's value at its first piece and `fill` elsewhere."""
    out = np.full(length, fill, dtype=word_values.dtype)
    out[starts] = word_values
    return out
