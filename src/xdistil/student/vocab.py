"""The student's vocabulary: the teacher's word pieces that occur in the data, plus special tokens.

Teacher and student share one tokenizer, so labels need no alignment; the student only keeps the
rows of the embedding matrix it can ever see, and maps every other piece to [UNK].
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


class PrunedVocab:
    """A map from teacher token ids to a dense range of student ids."""

    def __init__(self, teacher_ids: Sequence[int], teacher_vocab_size: int, unk_teacher_id: int, pad_teacher_id: int):
        self.teacher_ids = np.asarray(teacher_ids, dtype=np.int64)
        if len(np.unique(self.teacher_ids)) != len(self.teacher_ids):
            raise ValueError("teacher ids of a vocabulary must be unique")
        self.teacher_vocab_size = teacher_vocab_size
        position = {int(t): s for s, t in enumerate(self.teacher_ids)}
        self.unk_id = position[unk_teacher_id]
        self.pad_id = position[pad_teacher_id]
        self.lookup = np.full(teacher_vocab_size, self.unk_id, dtype=np.int64)
        self.lookup[self.teacher_ids] = np.arange(len(self.teacher_ids))
        self.counts: np.ndarray | None = None  # each row's count in the data it was built from (a loaded vocabulary has none)

    @classmethod
    def from_token_ids(
        cls,
        sequences: Iterable[Sequence[int]],
        teacher_vocab_size: int,
        special_ids: Sequence[int],
        unk_teacher_id: int,
        pad_teacher_id: int,
        min_count: int = 1,
    ) -> PrunedVocab:
        """Keep special tokens and every piece seen at least `min_count` times, in teacher-id order."""
        counts = np.zeros(teacher_vocab_size, dtype=np.int64)
        for sequence in sequences:
            np.add.at(counts, np.asarray(sequence, dtype=np.int64), 1)
        return cls.from_counts(counts, special_ids, unk_teacher_id, pad_teacher_id, min_count)

    @classmethod
    def from_counts(
        cls, counts: np.ndarray, special_ids: Sequence[int], unk_teacher_id: int, pad_teacher_id: int, min_count: int = 1
    ) -> PrunedVocab:
        """The same from per-teacher-id counts (as gathered chunk by chunk over a large transfer set)."""
        specials = list(dict.fromkeys(int(t) for t in special_ids))
        seen = set(np.flatnonzero(counts >= min_count).tolist())
        rest = sorted(seen.difference(specials))
        vocab = cls(specials + rest, len(counts), unk_teacher_id, pad_teacher_id)
        vocab.counts = np.asarray(counts)[vocab.teacher_ids]
        return vocab

    @classmethod
    def for_tokenizer(cls, counts: np.ndarray, tokenizer, min_count: int = 1) -> PrunedVocab:
        """The pieces of `tokenizer` counted at least `min_count` times, and its special ones (logged)."""
        from xdistil.progress import log

        vocab = cls.from_counts(counts, tokenizer.all_special_ids, tokenizer.unk_token_id, tokenizer.pad_token_id, min_count)
        log(f"student vocabulary: {len(vocab):,} of its tokenizer's {len(tokenizer):,} word pieces")
        return vocab

    def __len__(self) -> int:
        return len(self.teacher_ids)

    def encode(self, teacher_ids: Sequence[int]) -> np.ndarray:
        """Student ids for a sequence of teacher ids (unseen pieces become [UNK])."""
        return self.lookup[np.asarray(teacher_ids, dtype=np.int64)]
