"""Text into word pieces, shared by the teacher, the transfer set and the student.

Classification texts become teacher token ids (truncated to a maximum length, the count kept);
tagging sentences become per-word pieces whose first piece carries the word's label. `IGNORE`
marks positions without a label in every loss and metric.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

IGNORE = -100
# a task's text -> ids: (tokenizer, items, max_length) -> (ids per item, how many were truncated); `tokenize` is one
Encode = Callable[[object, Sequence, int], tuple[list[list[int]], int]]


def tokenization_rules(tokenizer) -> dict:
    """What decides a fast tokenizer's ids (vocabulary, normaliser, pre-tokeniser, special tokens),
    without its truncation and padding state, which every call may change."""
    rules = json.loads(tokenizer.backend_tokenizer.to_str())
    rules.pop("truncation", None)
    rules.pop("padding", None)
    return rules


def same_tokenization(a, b) -> bool:
    """Whether two fast tokenizers turn every text into the same ids."""
    return tokenization_rules(a) == tokenization_rules(b)


def tokenize(tokenizer, texts: Sequence[str], max_length: int, pairs: Sequence[str] | None = None) -> tuple[list[list[int]], int]:
    """Teacher token ids per text (truncated to max_length) and how many texts were truncated. With `pairs`, each
    text and its pair are one input, joined as the tokenizer joins two segments ([CLS] a [SEP] b [SEP])."""
    if pairs is None:
        full = tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
    else:
        full = tokenizer(list(texts), list(pairs), add_special_tokens=True, truncation=False)["input_ids"]
    truncated = sum(len(ids) > max_length for ids in full)
    if not truncated:
        return full, 0
    clipped = [ids if len(ids) <= max_length else ids[: max_length - 1] + ids[-1:] for ids in full]
    return clipped, truncated


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
