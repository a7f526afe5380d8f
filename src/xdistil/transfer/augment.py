"""Transfer-set augmentation after Tang et al. (2019): masking, word replacement, n-gram sampling.

Tang et al. replace a word by another of the same part of speech; without a tagger in the core
library, a replacement here is drawn by frequency from the words of the first transfer texts.
The teacher labels every augmented text, so no label is ever guessed. Texts are augmented one at
a time with a random generator seeded by (seed, position), so the stream is reproducible and
never held in memory.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterable, Iterator

from xdistil.config import AugmentConfig

POOL_TEXTS = 20_000


class WordPool:
    """Words to draw replacements from, weighted by their frequency in the first POOL_TEXTS texts."""

    def __init__(self, texts: Iterable[str]):
        counts = Counter(word for text in itertools.islice(texts, POOL_TEXTS) for word in text.split())
        self.words = list(counts)
        self.cumulative = list(itertools.accumulate(counts.values()))

    def draw(self, rng: random.Random) -> str:
        return rng.choices(self.words, cum_weights=self.cumulative)[0]


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
                new.append(pool.draw(rng))
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


def augment_stream(texts: Iterable[str], config: AugmentConfig, mask_token: str, seed: int, pool: WordPool) -> Iterator[str]:
    """The augmented texts of every input text, in order; empty when `config.factor` is 0."""
    if config.factor == 0:
        return
    for index, text in enumerate(texts):
        yield from augment_one(text, random.Random(f"{seed}:{index}"), config, mask_token, pool)


def augment_texts(texts: list[str], config: AugmentConfig, mask_token: str, seed: int) -> list[str]:
    """All augmented texts of an in-memory list (convenience for small inputs)."""
    return list(augment_stream(texts, config, mask_token, seed, WordPool(texts)))
