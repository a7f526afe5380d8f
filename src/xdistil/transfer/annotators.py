"""The teacher's annotators: one chunk of texts -> the tensors of a cache chunk.

Classification rows hold one pooled representation per text; tagging rows hold one logit and
representation row per word, read at its first piece, long sentences run as teacher windows.
Each task object picks its annotator; the cache stores whatever tensors it returns.
"""

from __future__ import annotations

import numpy as np
import torch

from xdistil.teacher.inference import tagger_outputs, teacher_outputs
from xdistil.text import encode_words, tokenize
from xdistil.transfer.cache import AnnotationSpec


def classify_chunk(model, tokenizer, texts: list[str], spec: AnnotationSpec, label_order, advance) -> tuple[dict[str, torch.Tensor], int]:
    """One chunk of classification texts: (tensors, number truncated)."""
    token_ids, cut = tokenize(tokenizer, texts, spec.max_length)
    logits = reps = None
    for indices, batch_logits, batch_reps in teacher_outputs(
        model, token_ids, tokenizer.pad_token_id, spec.batch_size, spec.layer, spec.pooling, label_order
    ):
        if logits is None:
            logits = np.zeros((len(texts), batch_logits.shape[1]), dtype=np.float32)
            reps = np.zeros((len(texts), batch_reps.shape[1]), dtype=np.float32)
        logits[indices] = batch_logits
        reps[indices] = batch_reps
        advance(len(indices))
    tensors = {
        "logits": torch.from_numpy(logits),
        "repr": torch.from_numpy(reps),
        "input_ids": torch.tensor([t for ids in token_ids for t in ids], dtype=torch.int32),
        "lengths": torch.tensor([len(ids) for ids in token_ids], dtype=torch.int32),
    }
    return tensors, cut


def tag_chunk(model, tokenizer, sentences: list[list[str]], spec: AnnotationSpec, label_order, advance) -> tuple[dict[str, torch.Tensor], int]:
    """One chunk of tagging sentences (word lists): (tensors, number split into windows)."""
    encoded = encode_words(tokenizer, sentences)
    logits, reps, split = tagger_outputs(
        model, encoded, tokenizer.pad_token_id, spec.batch_size, spec.max_length, spec.layer, label_order, advance
    )
    ids = [e.ids for e in encoded]
    tensors = {
        "logits": torch.from_numpy(np.concatenate(logits)),
        "repr": torch.from_numpy(np.concatenate(reps)),
        "input_ids": torch.from_numpy(np.concatenate(ids)),
        "lengths": torch.tensor([len(x) for x in ids], dtype=torch.int32),
        "words": torch.tensor([len(e) for e in encoded], dtype=torch.int32),
        "starts": torch.from_numpy(np.concatenate([e.starts for e in encoded])),
    }
    return tensors, split
