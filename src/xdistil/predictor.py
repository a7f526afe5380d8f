"""One front end for every trained student: text -> the tokenizer's ids -> the student's ids -> a padded batch -> logits.

Torch-free (numpy): the PyTorch student (`student/io.py`) and the ONNX one (`export/runtime.py`) differ
only in `_forward`, the backend that turns a padded batch into logits. What a task takes in (texts, or
sentences of words) and gives out comes from its description (`tasks/description.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xdistil.data.readers import MAX_CHARS, clip
from xdistil.numeric import softmax
from xdistil.tasks.description import TaskDescription
from xdistil.text import encode_words


def pad_ids(sequences: Sequence[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids padded to the longest sequence, lengths) as int64 arrays: the layout every student reads."""
    lengths = np.asarray([len(s) for s in sequences], dtype=np.int64)
    ids = np.full((len(sequences), int(lengths.max())), pad_id, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
    return ids, lengths


def word_index(sentences: Sequence) -> np.ndarray:
    """(sentences, most words) int64: each word's first-piece position in its sentence's ids (0 past the last word)."""
    index = np.zeros((len(sentences), max(len(e) for e in sentences)), dtype=np.int64)
    for row, sentence in enumerate(sentences):
        index[row, : len(sentence)] = sentence.starts
    return index


class Predictor:
    """`predict(items)` / `predict_proba(items)` for a task: texts for a per-text task, sentences (word lists, or
    whitespace-split strings) for a per-word one. Subclasses set the attributes below and give `_forward`."""

    task: TaskDescription
    tokenizer: object  # called like a transformers fast tokenizer (see `xdistil.text`)
    lookup: np.ndarray  # tokenizer id -> the student's id (the pruned vocabulary)
    pad_id: int  # the student's padding id
    label_names: list[str]
    max_length: int  # texts are cut to this many pieces, as in training (a per-word task reads sentences whole)

    def _forward(self, ids: np.ndarray, lengths: np.ndarray, word_index: np.ndarray | None) -> np.ndarray:
        """Logits of one padded batch: (batch, labels), or (batch, words, labels) with `word_index`."""
        raise NotImplementedError

    def logits(self, texts: Sequence | str, batch_size: int = 256) -> np.ndarray:
        """A per-text task's raw logits, one row per item (a string is one text; a task may take other items,
        such as pairs of texts: its description's `encode` reads them)."""
        texts = [clip(t, MAX_CHARS)[0] if isinstance(t, str) else t for t in ([texts] if isinstance(texts, str) else texts)]
        if not texts:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        ids, _ = self.task.encode(self.tokenizer, texts, self.max_length)
        sequences = [self.lookup[np.asarray(i, dtype=np.int64)] for i in ids]
        return np.concatenate([self._forward(*pad_ids(sequences[s : s + batch_size], self.pad_id), None)
                               for s in range(0, len(sequences), batch_size)])

    def _word_proba(self, sentences: Sequence, batch_size: int) -> list[np.ndarray]:
        words = [clip(s, MAX_CHARS)[0].split() if isinstance(s, str) else list(s) for s in sentences]
        if not words:
            return []
        encoded = encode_words(self.tokenizer, words)
        out: list[np.ndarray] = []
        for start in range(0, len(encoded), batch_size):
            part = encoded[start : start + batch_size]
            ids, lengths = pad_ids([self.lookup[np.asarray(e.ids, dtype=np.int64)] for e in part], self.pad_id)
            probs = softmax(self._forward(ids, lengths, word_index(part)))
            out.extend(probs[row, : len(e)] for row, e in enumerate(part))
        return out

    def predict_proba(self, items: Sequence | str, batch_size: int = 256):
        """Per-text task: a (texts, labels) array. Per-word task: per sentence, a (words, labels) array.
        Columns in `label_names` order; a lone string is one item."""
        if isinstance(items, str):
            items = [items]
        if self.task.per_word:
            return self._word_proba(items, batch_size)
        return softmax(self.logits(items, batch_size))

    def predict(self, items: Sequence | str, batch_size: int = 256) -> list:
        """Label names: one per text, or one per word of each sentence."""
        probs = self.predict_proba(items, batch_size)
        if self.task.per_word:
            return [[self.label_names[i] for i in p.argmax(1)] for p in probs]
        return [self.label_names[i] for i in probs.argmax(1)]
