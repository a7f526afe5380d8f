"""Transfer-set augmentation after Tang et al. (2019): masking, word replacement, n-gram sampling.

Tang et al. replace a word by another of the same part of speech; without a tagger in the core
library, a replacement here is drawn from the corpus' own words by frequency. The teacher labels
every augmented text, so no label is ever guessed.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence

from xdistil.config import AugmentConfig


def augment_texts(texts: Sequence[str], config: AugmentConfig, mask_token: str, seed: int) -> list[str]:
    """`config.factor` new texts per input text, deterministic for a seed; duplicates of inputs are dropped."""
    if config.factor == 0 or not texts:
        return []
    rng = random.Random(seed)
    counts = Counter(word for text in texts for word in text.split())
    words, weights = zip(*counts.items())
    cumulative = list(itertools.accumulate(weights))
    seen = set(texts)
    out: list[str] = []
    for text in texts:
        tokens = text.split()
        for _ in range(config.factor):
            new = []
            for token in tokens:
                roll = rng.random()
                if roll < config.p_mask:
                    new.append(mask_token)
                elif roll < config.p_mask + config.p_swap:
                    new.append(rng.choices(words, cum_weights=cumulative)[0])
                else:
                    new.append(token)
            if len(new) > 2 and rng.random() < config.p_ngram:
                n = rng.randint(1, min(config.max_ngram, len(new)))
                start = rng.randint(0, len(new) - n)
                new = new[start : start + n]
            candidate = " ".join(new)
            if candidate not in seen:
                seen.add(candidate)
                out.append(candidate)
    return out
