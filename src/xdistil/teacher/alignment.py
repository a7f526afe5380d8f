"""Words <-> word pieces for tagging: the first piece of a word carries its label, the rest are ignored.

A sentence is encoded once into its full piece sequence (special tokens around, no length limit),
which the student reads whole. The teacher has a maximum length, so a longer sentence is
cut into overlapping windows of whole words; each word's teacher output is taken from the window
where it sits furthest from an edge, and the windows are stitched back into one row per word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xdistil.text import EncodedSentence


@dataclass
class Window:
    """One teacher input: words [start, stop) of sentence `row`, whose outputs are kept for words [keep_start, keep_stop)."""

    row: int
    start: int
    stop: int
    keep_start: int
    keep_stop: int


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
