"""The teacher's annotators: one chunk of texts -> the tensors of a cache chunk.

Classification rows hold one pooled representation per text; tagging rows hold one logit and
representation row per word, read at its first piece, long sentences run as teacher windows.
Each task object picks its annotator; the cache stores whatever tensors it returns.
"""

from __future__ import annotations

import numpy as np
import torch

from xdistil.teacher.inference import tagger_outputs, teacher_outputs
from xdistil.text import Encode, EncodedSentence, encode_words, tokenize
from xdistil.transfer.cache import AnnotationSpec


def classify_chunk(model, tokenizer, texts: list[str], spec: AnnotationSpec, label_order, advance,
                   encode: Encode = tokenize) -> tuple[dict[str, torch.Tensor], int]:
    """One chunk of classification texts: (tensors, number truncated); `encode` is the task's text -> ids."""
    token_ids, cut = encode(tokenizer, texts, spec.max_length)
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
    return {"logits": torch.from_numpy(logits), "repr": torch.from_numpy(reps), **_token_tensors(token_ids)}, cut


def tag_chunk(model, tokenizer, sentences: list[list[str]], spec: AnnotationSpec, label_order, advance) -> tuple[dict[str, torch.Tensor], int]:
    """One chunk of tagging sentences (word lists): (tensors, number split into windows)."""
    encoded = encode_words(tokenizer, sentences)
    logits, reps, split = tagger_outputs(
        model, encoded, tokenizer.pad_token_id, spec.batch_size, spec.max_length, spec.layer, label_order, advance
    )
    return {"logits": torch.from_numpy(np.concatenate(logits)), "repr": torch.from_numpy(np.concatenate(reps)), **_word_tensors(encoded)}, split


def _token_tensors(token_ids: list[list[int]]) -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.tensor([t for ids in token_ids for t in ids], dtype=torch.int32),
        "lengths": torch.tensor([len(ids) for ids in token_ids], dtype=torch.int32),
    }


def _word_tensors(encoded: list[EncodedSentence]) -> dict[str, torch.Tensor]:
    ids = [e.ids for e in encoded]
    return {
        "input_ids": torch.from_numpy(np.concatenate(ids)),
        "lengths": torch.tensor([len(x) for x in ids], dtype=torch.int32),
        "words": torch.tensor([len(e) for e in encoded], dtype=torch.int32),
        "starts": torch.from_numpy(np.concatenate([e.starts for e in encoded])),
    }


def classify_tokens(model, tokenizer, texts: list[str], spec: AnnotationSpec, label_order, advance,
                    encode: Encode = tokenize) -> tuple[dict[str, torch.Tensor], int]:
    """A student's own token ids for one chunk of texts (no teacher runs; `model` is unused)."""
    token_ids, cut = encode(tokenizer, texts, spec.max_length)
    advance(len(texts))
    return _token_tensors(token_ids), cut


def tag_tokens(model, tokenizer, sentences: list[list[str]], spec: AnnotationSpec, label_order, advance) -> tuple[dict[str, torch.Tensor], int]:
    """A student's own word pieces and first-piece positions for one chunk of sentences (whole sentences, never cut)."""
    encoded = encode_words(tokenizer, sentences)
    advance(len(sentences))
    return _word_tensors(encoded), 0
