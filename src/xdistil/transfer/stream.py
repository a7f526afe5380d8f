"""The transfer set as the teacher reads it: the labeled train texts first (so gold labels line up
with the first cache rows), then the unlabeled text and its augmentations (all of them, or the share
a labeling budget chose), in the task's form.

It is read lazily and regenerated on every pass (augmentation is seeded), so its size never
matters for memory; `count_and_fingerprint` makes one counting pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from xdistil.atomic import atomic_write_json
from xdistil.config import AugmentConfig
from xdistil.data.corpus import Corpus
from xdistil.errors import XDistilError
from xdistil.fingerprint import fingerprint, texts_fingerprint
from xdistil.progress import log
from xdistil.transfer.augment import WordPool, augment_stream, digest, file_word_vectors, nearest_words, teacher_word_vectors
from xdistil.transfer.budget import budget_count, choose_diverse, choose_random, first_round_count, text_vectors

# augmentation settings added after the first five: in the fingerprint only when set, so earlier caches stay valid
LATER_AUGMENT_DEFAULTS = {"replace": "corpus", "neighbours": 10, "vectors": None}


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
    neighbour_table: Callable[[], tuple[object, object]] | None = None  # (tokenizer, input embeddings), asked when needed
    neighbour_identity: str = ""  # whose embeddings those are (the teacher's fingerprint), for the stream's fingerprint
    budget: int | float | None = None  # label only this many of the transfer texts (transfer.budget)
    budget_strategy: str = "random"
    chunk_size: int = 2048  # the transfer cache's (uncertain's first round ends on a chunk boundary)
    second: np.ndarray | None = None  # uncertain's second round, set once the first is labeled (budget.label_first_round)

    @classmethod
    def of(cls, corpus: Corpus, config, task, tokenizer, teacher_model=None, teacher_fp: str = "") -> TransferStream:
        """The stream of a run config (a RunConfig) and task; `teacher_model` gives neighbour replacements their embeddings."""

        def table() -> tuple[object, object]:
            if teacher_model is None:
                raise XDistilError("transfer.augment.replace: neighbours and transfer.budget_strategy: diverse need the teacher's "
                                   "embeddings (or transfer.augment.vectors)")
            return tokenizer, teacher_model.get_input_embeddings().weight.detach().float().cpu().numpy()

        return cls(corpus, config.transfer.augment, config.seed, lambda: tokenizer.mask_token or "[MASK]",
                   lambda texts: task.unlabeled(texts, config.data), task.unlabeled_settings(config.data), table,
                   teacher_fp, config.transfer.budget, config.transfer.budget_strategy, config.transfer.chunk_size)

    def __iter__(self) -> Iterator:
        return itertools.chain(self.corpus.train.texts, self.unlabeled(self.labeled()))

    def pool(self) -> Iterator[str]:
        """Every unlabeled transfer text, real then generated: what a budget chooses from."""
        return itertools.chain(self.corpus.transfer, self.augmented())

    def labeled(self) -> Iterator[str]:
        """The transfer texts the labeler labels: the whole pool, or the budget's choice in pool order."""
        if self.selection is None:
            return self.pool()
        rounds = (self.first_round, self.second) if self.budget_strategy == "uncertain" else (self.selection,)
        return itertools.chain.from_iterable(self.at(positions) for positions in rounds)

    def known_texts(self) -> Iterator[str]:
        """Every text of the run: train, dev, test and the whole transfer pool (what a label file may hold)."""
        corpus = self.corpus
        return itertools.chain(corpus.train.texts, corpus.dev.texts, corpus.test.texts, self.pool())

    def needed_texts(self) -> Iterator[str]:
        """The texts surely labeled: all of them, or without the transfer pool when a budget chooses from it."""
        corpus = self.corpus
        fixed = itertools.chain(corpus.train.texts, corpus.dev.texts, corpus.test.texts)
        return fixed if self.budget is not None else itertools.chain(fixed, self.pool())

    def at(self, positions) -> Iterator[str]:
        """The pool's texts at sorted `positions`, in pool order (the pool regenerated)."""
        keep = set(positions.tolist())
        return (text for position, text in enumerate(self.pool()) if position in keep)

    @cached_property
    def selection(self):
        """The pool positions a budget labels (sorted; uncertain's: its first round's, then its second's), or None
        without a budget."""
        if self.budget is None:
            return None
        pool = self.pool_size
        count = budget_count(self.budget, pool)
        if self.budget_strategy == "uncertain":
            if self.second is None:
                raise XDistilError("the uncertain budget's second round is chosen once its first is labeled (budget.label_first_round)")
            chosen = np.concatenate([self.first_round, self.second])
        elif self.budget_strategy == "diverse":
            chosen = choose_diverse(self.vectors, count, self.seed)
        else:
            chosen = choose_random(pool, count, self.seed)
        log(f"labeling budget: {len(chosen):,} of {pool:,} transfer texts ({self.budget_strategy})")
        return chosen

    @cached_property
    def vectors(self) -> np.ndarray:
        """Each pool text's cheap vector (budget.text_vectors), for the diverse and uncertain budgets."""
        tokenizer, table = self.neighbour_table()
        return text_vectors(self.pool(), tokenizer, table, self.seed)

    @cached_property
    def first_round(self) -> np.ndarray:
        """The uncertain budget's first round: about half the budget, by the diverse strategy."""
        count = first_round_count(budget_count(self.budget, self.pool_size), len(self.corpus.train), self.chunk_size)
        return choose_diverse(self.vectors, count, self.seed)

    def save_budget(self, folder: Path) -> None:
        """With a budget, what it chose (`budget.json` in `folder`): the strategy, the pool and the positions labeled."""
        if self.selection is not None:
            rounds = {"rounds": [len(self.first_round), len(self.second)]} if self.budget_strategy == "uncertain" else {}
            atomic_write_json(folder / "budget.json", {"budget": self.budget, "strategy": self.budget_strategy, "pool": self.pool_size,
                                                       "labeled": len(self.selection), "positions": self.selection.tolist(), **rounds})

    def augmented(self) -> Iterator[str]:
        """The augmented transfer texts, regenerated on each call (seeded, so always the same)."""
        if not self.augment.factor:
            return iter(())
        return augment_stream(self.corpus.transfer, self.augment, self.mask_token(), self.seed, self.word_pool, self.real_texts)

    def real_texts(self) -> set[bytes]:
        """Digests of every real text (train, dev, test, transfer): no augmented text may be one of them."""
        corpus = self.corpus
        return {digest(t) for t in itertools.chain(corpus.train.texts, corpus.dev.texts, corpus.test.texts, corpus.transfer)}

    @cached_property
    def word_pool(self) -> WordPool:
        pool = WordPool(self.corpus.transfer)
        if self.augment.replace == "neighbours":
            words = pool.frequent()
            if self.augment.vectors is not None:
                kept, vectors = file_word_vectors(self.augment.vectors, words)
            else:
                tokenizer, table = self.neighbour_table()
                kept, vectors = teacher_word_vectors(words, tokenizer, table)
            pool.neighbours = nearest_words(kept, vectors, self.augment.neighbours)
            log(f"augmentation: neighbours for {len(pool.neighbours):,} of the {len(words):,} most frequent words")
        return pool

    def augment_identity(self) -> dict:
        """The augmentation settings as the fingerprint sees them (and the embeddings neighbours come from)."""
        values = self.augment.model_dump(mode="json")
        identity = {k: v for k, v in values.items() if k not in LATER_AUGMENT_DEFAULTS or v != LATER_AUGMENT_DEFAULTS[k]}
        if self.augment.factor and self.augment.replace == "neighbours" and self.augment.vectors is None:
            identity["embeddings"] = self.neighbour_identity
        return identity

    @cached_property
    def count_and_fingerprint(self) -> tuple[int, str]:
        """(number of texts in the stream, its fingerprint)."""
        _, transfer_fp, _ = self.corpus.transfer.scan()
        labeled = self.pool_size if self.budget is None else budget_count(self.budget, self.pool_size)
        budget = () if self.budget is None else ({"budget": self.budget, "strategy": self.budget_strategy},)
        fp = fingerprint(texts_fingerprint(self.corpus.train.texts), transfer_fp, self.augment_identity(), self.seed, self.unlabeled_settings,
                         *budget)
        return len(self.corpus.train) + labeled, fp

    @cached_property
    def pool_size(self) -> int:
        """Real plus generated transfer texts."""
        n_transfer = self.corpus.transfer.scan()[0]
        if self.augment.factor:
            log(f"augmentation: {self.generated:,} new transfer texts from {n_transfer:,} real ones")
        return n_transfer + self.generated

    @cached_property
    def generated(self) -> int:
        """How many augmented texts the stream holds (one counting pass)."""
        return sum(1 for _ in self.augmented()) if self.augment.factor else 0

    def sizes(self) -> dict[str, int]:
        """The transfer set's real and generated texts, and how many of them are labeled (the labeled train texts not counted)."""
        count, _ = self.count_and_fingerprint
        return {"real": self.pool_size - self.generated, "generated": self.generated, "labeled": count - len(self.corpus.train)}

    def parts(self) -> dict[str, tuple[Iterable, int, str]]:
        """Everything a run annotates: (texts, count, fingerprint of the texts) of this stream and of
        the dev and test texts (for evaluation)."""
        dev, test = self.corpus.dev.texts, self.corpus.test.texts
        return {
            "transfer": (self, *self.count_and_fingerprint),
            "dev": (dev, len(dev), texts_fingerprint(dev)),
            "test": (test, len(test), texts_fingerprint(test)),
        }
