"""The student on disk: safetensors weights, a JSON config and the teacher's tokenizer, loadable in one call.

Any registered family saves and loads the same way: `student_config.json` names its `arch` and
holds the family's own config, from which the registry re-creates the architecture.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from xdistil.errors import XDistilError
from xdistil.student.base import Student
from xdistil.student.inputs import batch_inputs, student_ids, word_batch
from xdistil.student.registry import family
from xdistil.student.vocab import PrunedVocab
from xdistil.text import encode_words

WEIGHTS = "model.safetensors"
CONFIG = "student_config.json"


class DistilledStudent:
    """A trained student of any family with its tokenizer, vocabulary, label names and the teacher's
    maximum length (texts are cut to it, as in training)."""

    def __init__(self, model: Student, tokenizer, vocab: PrunedVocab, label_names: list[str], max_length: int):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.label_names = label_names
        self.max_length = max_length


class DistilledClassifier(DistilledStudent):
    """A trained classification student: `predict(texts)` gives label names."""

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Class probabilities, one row per text, columns in `label_names` order."""
        ids = student_ids(self.tokenizer, self.vocab, texts, self.max_length)
        rows = []
        for start in range(0, len(ids), batch_size):
            batch = batch_inputs(ids[start : start + batch_size], self.vocab.pad_id)
            rows.append(torch.softmax(self.model(batch).logits.float(), dim=-1))
        return torch.cat(rows).numpy() if rows else np.zeros((0, len(self.label_names)))

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> list[str]:
        """The most probable label name for each text."""
        return [self.label_names[i] for i in self.predict_proba(texts, batch_size).argmax(axis=1)]


class DistilledTagger(DistilledStudent):
    """A trained tagging student: `predict(sentences)` gives one IOB2 tag per word.

    A sentence is a list of words, or a string split on whitespace. Every word is tagged, however
    long the sentence (the student reads the whole sentence; `max_length` does not cut it).
    """

    @torch.inference_mode()
    def predict_proba(self, sentences: Sequence[Sequence[str] | str], batch_size: int = 128) -> list[np.ndarray]:
        """Per sentence, a (words, labels) array of probabilities, columns in `label_names` order."""
        words = [s.split() if isinstance(s, str) else list(s) for s in sentences]
        encoded = encode_words(self.tokenizer, words)
        out: list[np.ndarray] = []
        for start in range(0, len(encoded), batch_size):
            part = encoded[start : start + batch_size]
            probs = torch.softmax(self.model(word_batch(part, self.vocab)).logits.float(), dim=-1).numpy()
            out.extend(probs[row, : len(e)] for row, e in enumerate(part))
        return out

    def predict(self, sentences: Sequence[Sequence[str] | str], batch_size: int = 128) -> list[list[str]]:
        """The most probable tag of each word of each sentence."""
        return [[self.label_names[i] for i in p.argmax(1)] for p in self.predict_proba(sentences, batch_size)]


PREDICTORS = {"classification": DistilledClassifier, "tagging": DistilledTagger}


def save_student(
    folder: str | Path, model: Student, tokenizer, vocab: PrunedVocab, label_names: list[str], max_length: int
) -> Path:
    """Write weights, config and tokenizer into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    tensors["vocab.teacher_ids"] = torch.as_tensor(vocab.teacher_ids)
    save_file(tensors, str(folder / WEIGHTS))
    meta = {
        "arch": model.arch,
        "task": "tagging" if model.per_word else "classification",
        "model": model.config(),
        "label_names": label_names,
        "max_length": max_length,
        "teacher_vocab_size": vocab.teacher_vocab_size,
        "unk_teacher_id": int(vocab.teacher_ids[vocab.unk_id]),
        "pad_teacher_id": int(vocab.teacher_ids[vocab.pad_id]),
    }
    (folder / CONFIG).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    tokenizer.save_pretrained(str(folder))
    return folder


def load_student(folder: str | Path) -> DistilledStudent:
    """Load a student saved by xdistil; returns an object with `predict(texts)` (classification)
    or `predict(sentences)` (tagging)."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise XDistilError(f"{folder}: not an xdistil student (expected {CONFIG} and {WEIGHTS})")
    meta = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    tensors = load_file(str(folder / WEIGHTS))
    vocab = PrunedVocab(
        tensors.pop("vocab.teacher_ids").tolist(), meta["teacher_vocab_size"], meta["unk_teacher_id"], meta["pad_teacher_id"]
    )
    try:
        model = family(meta.get("arch", "bilstm")).from_config(meta["model"])
    except ValueError as err:
        raise XDistilError(f"{folder / CONFIG}: {err}") from None
    model.load_state_dict(tensors)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return PREDICTORS[meta["task"]](model, tokenizer, vocab, meta["label_names"], meta["max_length"])
