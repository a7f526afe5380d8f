"""The student on disk: safetensors weights, a JSON config and the teacher's tokenizer, loadable in one call."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from xdistil.errors import XDistilError
from xdistil.student.bilstm import BiLSTMConfig, BiLSTMStudent
from xdistil.student.inputs import pad_batch, student_ids
from xdistil.student.vocab import PrunedVocab

WEIGHTS = "model.safetensors"
CONFIG = "student_config.json"


class DistilledClassifier:
    """A trained student with its tokenizer and vocabulary: `predict(texts)` gives label names."""

    def __init__(self, model: BiLSTMStudent, tokenizer, vocab: PrunedVocab, label_names: list[str], max_length: int):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.label_names = label_names
        self.max_length = max_length

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Class probabilities, one row per text, columns in `label_names` order."""
        ids = student_ids(self.tokenizer, self.vocab, texts, self.max_length)
        rows = []
        for start in range(0, len(ids), batch_size):
            input_ids, lengths = pad_batch(ids[start : start + batch_size], self.vocab.pad_id)
            rows.append(torch.softmax(self.model(input_ids, lengths).logits.float(), dim=-1))
        return torch.cat(rows).numpy() if rows else np.zeros((0, len(self.label_names)))

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> list[str]:
        """The most probable label name for each text."""
        return [self.label_names[i] for i in self.predict_proba(texts, batch_size).argmax(axis=1)]


def save_student(
    folder: str | Path, model: BiLSTMStudent, tokenizer, vocab: PrunedVocab, label_names: list[str], max_length: int
) -> Path:
    """Write weights, config and tokenizer into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    tensors["vocab.teacher_ids"] = torch.as_tensor(vocab.teacher_ids)
    save_file(tensors, str(folder / WEIGHTS))
    meta = {
        "arch": "bilstm",
        "model": model.config.to_dict(),
        "label_names": label_names,
        "max_length": max_length,
        "teacher_vocab_size": vocab.teacher_vocab_size,
        "unk_teacher_id": int(vocab.teacher_ids[vocab.unk_id]),
        "pad_teacher_id": int(vocab.teacher_ids[vocab.pad_id]),
    }
    (folder / CONFIG).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    tokenizer.save_pretrained(str(folder))
    return folder


def load_student(folder: str | Path) -> DistilledClassifier:
    """Load a student saved by xdistil; returns an object with `predict(texts)`."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise XDistilError(f"{folder}: not an xdistil student (expected {CONFIG} and {WEIGHTS})")
    meta = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    tensors = load_file(str(folder / WEIGHTS))
    vocab = PrunedVocab(
        tensors.pop("vocab.teacher_ids").tolist(), meta["teacher_vocab_size"], meta["unk_teacher_id"], meta["pad_teacher_id"]
    )
    model = BiLSTMStudent(BiLSTMConfig(**meta["model"]))
    model.load_state_dict(tensors)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return DistilledClassifier(model, tokenizer, vocab, meta["label_names"], meta["max_length"])
