"""Transfer-set augmentation after Tang et al. (2019): masking, word replacement, n-gram sampling.

Tang et al. replace a word by another of the same part of speech; without a tagger in the core
library, a replacement is drawn by frequency from the words of the first transfer texts (`corpus`),
or among the word's nearest neighbours (`neighbours`: by the teacher's input embedding of words that
are one word piece, or by the user's GloVe-format vectors). The teacher labels every augmented
text, so no label is ever guessed. Texts are augmented one at a time with a random generator seeded
by (seed, position), so the stream is reproducible and never held in memory; a generated text equal
to an earlier one, or to any train, dev, test or real transfer text, is left out (only 8-byte
digests of the texts seen are kept).
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from xdistil.config import AugmentConfig
from xdistil.errors import XDistilError

POOL_TEXTS = 20_000
NEIGHBOUR_WORDS = 20_000  # the most frequent corpus words that get neighbours (the rest are replaced from the corpus)


def digest(text: str) -> bytes:
    """A short stable digest of a text, for deduplication without keeping the text."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


class WordPool:
    """Words to draw replacements from, weighted by their frequency in the first POOL_TEXTS texts;
    with `neighbours`, a word that has neighbours is replaced by one of them instead."""

    def __init__(self, texts: Iterable[str]):
        counts = Counter(word for text in itertools.islice(texts, POOL_TEXTS) for word in text.split())
        self.words = list(counts)
        self.cumulative = list(itertools.accumulate(counts.values()))
        self.neighbours: dict[str, list[str]] = {}

    def frequent(self, limit: int = NEIGHBOUR_WORDS) -> list[str]:
        """The pool's most frequent words, most frequent first."""
        weights = np.diff(np.asarray([0, *self.cumulative]))
        return [self.words[i] for i in np.argsort(-weights, kind="stable")[:limit]]

    def draw(self, rng: random.Random, word: str | None = None) -> str:
        near = self.neighbours.get(word) if word is not None else None
        if near:
            return rng.choice(near)
        return rng.choices(self.words, cum_weights=self.cumulative)[0]


def nearest_words(words: list[str], vectors: np.ndarray, k: int, block: int = 1024) -> dict[str, list[str]]:
    """Each word's `k` nearest other words by cosine similarity of their vectors (one row per word)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    k = min(k, len(words) - 1)
    out: dict[str, list[str]] = {}
    if k < 1:
        return out
    for start in range(0, len(words), block):
        similarity = unit[start : start + block] @ unit.T
        rows = np.arange(similarity.shape[0])
        similarity[rows, rows + start] = -np.inf  # never a word's own neighbour
        top = np.argpartition(-similarity, k, axis=1)[:, :k]
        order = np.take_along_axis(similarity, top, axis=1).argsort(axis=1)[:, ::-1]
        for row, picks in enumerate(np.take_along_axis(top, order, axis=1)):
            out[words[start + row]] = [words[j] for j in picks]
    return out


def teacher_word_vectors(words: list[str], tokenizer, table: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The words that the teacher's tokenizer reads as one word piece, and those pieces' input embeddings."""
    pieces = tokenizer(words, add_special_tokens=False)["input_ids"] if words else []
    special = set(tokenizer.all_special_ids)  # an unknown word is one piece too: [UNK]
    kept = [(word, ids[0]) for word, ids in zip(words, pieces) if len(ids) == 1 and ids[0] not in special]
    rows = np.asarray([piece for _, piece in kept], dtype=np.int64)
    return [word for word, _ in kept], table[rows] if len(rows) else np.zeros((0, table.shape[1]), table.dtype)


def file_word_vectors(path: Path, words: list[str]) -> tuple[list[str], np.ndarray]:
    """The vectors of `words` found in a GloVe-format text file (`word v1 v2 ...` per line); only those are kept in memory."""
    wanted, kept, rows, width = set(words), [], [], None
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                word, _, rest = line.rstrip("\n").partition(" ")
                if word not in wanted:
                    continue
                values = np.asarray(rest.split(), dtype=np.float32) if rest else np.zeros(0, np.float32)
                if width is None:
                    width = len(values)
                if len(values) != width or width == 0:
                    raise XDistilError(f"{path}: line {number}: expected a word and {width or 'its'} numbers, got {len(values)} numbers")
                kept.append(word)
                rows.append(values)
                wanted.discard(word)
    except OSError as error:
        raise XDistilError(f"transfer.augment.vectors: cannot read {path}: {error.strerror or error}") from None
    except ValueError:
        raise XDistilError(f"{path}: line {number}: expected a word followed by numbers") from None
    return kept, np.stack(rows) if rows else np.zeros((0, 1), np.float32)


def augment_one(text: str, rng: random.Random, config: AugmentConfig, mask_token: str, pool: WordPool) -> list[str]:
    """Up to `config.factor` new versions of one text, none equal to it or to each other."""
    tokens = text.split()
    out: list[str] = []
    for _ in range(config.factor):
        new = []
        for token in tokens:
            roll = rng.random()
            if roll < config.p_mask:
                new.append(mask_token)
            elif roll < config.p_mask + config.p_swap:
                new.append(pool.draw(rng, token))
            else:
                new.append(token)
        if len(new) > 2 and rng.random() < config.p_ngram:
            n = rng.randint(1, min(config.max_ngram, len(new)))
            start = rng.randint(0, len(new) - n)
            new = new[start : start + n]
        candidate = " ".join(new)
        if candidate != text and candidate not in out:
            out.append(candidate)
    return out


def augment_stream(texts: Iterable[str], config: AugmentConfig, mask_token: str, seed: int, pool: WordPool,
                   exclude: Callable[[], set[bytes]] = set) -> Iterator[str]:
    """The augmented texts of every input text, in order, each new (never an earlier one's, nor a text of
    `exclude()`: digests of the texts no augmentation may emit); empty when `config.factor` is 0."""
    if config.factor == 0:
        return
    seen = set(exclude())
    for index, text in enumerate(texts):
        for candidate in augment_one(text, random.Random(f"{seed}:{index}"), config, mask_token, pool):
            key = digest(candidate)
            if key not in seen:
                seen.add(key)
                yield candidate


def augment_texts(texts: list[str], config: AugmentConfig, mask_token: str, seed: int) -> list[str]:
    """All augmented texts of an in-memory list (convenience for small inputs)."""
    return list(augment_stream(texts, config, mask_token, seed, WordPool(texts), lambda: {digest(t) for t in texts}))
