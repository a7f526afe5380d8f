"""The transfer set as the teacher reads it: the labeled train texts first (so gold labels line up
with the first cache rows), then the unlabeled text and its augmentations, in the task's form.

It is read lazily and regenerated on every pass (augmentation is seeded), so its size never
matters for memory; `count_and_fingerprint` makes one counting pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

from xdistil.config import AugmentConfig
from xdistil.data.corpus import Corpus
from xdistil.fingerprint import fingerprint, texts_fingerprint
from xdistil.progress import log
from xdistil.transfer.augment import WordPool, augment_stream


@dataclass
class TransferStream:
    """Train texts, then unlabeled texts and their augmentations, through the task's `unlabeled` form
    (`unlabeled_settings`: what that form depends on, for the fingerprint)."""

    corpus: Corpus
    augment: AugmentConfig
    seed: int
    mask_token: Callable[[], str]  # asked only when augmenting
    unlabeled: Callable[[Iterable[str]], Iterable]
    unlabeled_settings: object = None

    def __iter__(self) -> Iterator:
        return itertools.chain(self.corpus.train.texts, self.unlabeled(itertools.chain(self.corpus.transfer, self.augmented())))

    def augmented(self) -> Iterator[str]:
        """The augmented transfer texts, regenerated on each call (seeded, so always the same)."""
        if not self.augment.factor:
            return iter(())
        return augment_stream(self.corpus.transfer, self.augment, self.mask_token(), self.seed, self.word_pool)

    @cached_property
    def word_pool(self) -> WordPool:
        return WordPool(self.corpus.transfer)

    @cached_property
    def count_and_fingerprint(self) -> tuple[int, str]:
        """(number of texts in the stream, its fingerprint)."""
        n_transfer, transfer_fp, _ = self.corpus.transfer.scan()
        count = len(self.corpus.train) + n_transfer
        if self.augment.factor:
            added = sum(1 for _ in self.augmented())
            log(f"augmentation: {added:,} new transfer texts from {n_transfer:,}")
            count += added
        fp = fingerprint(
            texts_fingerprint(self.corpus.train.texts), transfer_fp, self.augment.model_dump(mode="json"), self.seed, self.unlabeled_settings
        )
        return count, fp

    def parts(self) -> dict[str, tuple[Iterable, int, str]]:
        """Everything a run annotates: (texts, count, fingerprint of the texts) of this stream and of
        the dev and test texts (for evaluation)."""
        dev, test = self.corpus.dev.texts, self.corpus.test.texts
        return {
            "transfer": (self, *self.count_and_fingerprint),
            "dev": (dev, len(dev), texts_fingerprint(dev)),
            "test": (test, len(test), texts_fingerprint(test)),
        }
