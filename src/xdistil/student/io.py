"""The student on disk: safetensors weights, a JSON config and the teacher's tokenizer, loadable in one call.

Any registered family saves and loads the same way: `config.json` names its `arch` and
holds the family's own config, from which the registry re-creates the architecture. The folder is
tamper-evident: `manifest.json`, written last, holds the SHA-256 of every other file, and loading
verifies it and the parts' consistency (tokenizer size, embedding rows, label count vs output width).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import ModelHubMixin
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from xdistil.errors import XDistilError
from xdistil.manifest import MANIFEST, verify_manifest, write_manifest
from xdistil.atomic import staged_folder
from xdistil.student.base import Student
from xdistil.predictor import Predictor
from xdistil.student.inputs import tensor_batch
from xdistil.student.registry import family
from xdistil.student.vocab import PrunedVocab
from xdistil.tasks.description import default_task, describe

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STUDENT_FORMAT = "xdistil-student/1"


class DistilledStudent(ModelHubMixin, Predictor):
    """A trained student of any family and task with its tokenizer, vocabulary, label names and the teacher's
    maximum length (texts are cut to it, as in training): `predict(items)` through the shared front end
    (`xdistil.predictor`), the PyTorch model as its backend.

    Saves and loads with the Hugging Face hub's conventions (`save_pretrained(folder)`,
    `DistilledStudent.from_pretrained(folder or repo id)`, `push_to_hub`), in xdistil's own folder format.
    """

    def _save_pretrained(self, save_directory: Path) -> None:
        save_student(save_directory, self.model, self.tokenizer, self.vocab, self.label_names, self.max_length, self.task.name)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir, force_download: bool, local_files_only: bool,
                         token, **model_kwargs) -> DistilledStudent:
        folder = Path(model_id)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(repo_id=model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                            local_files_only=local_files_only, token=token))
        return load_student(folder)

    def __init__(self, model: Student, tokenizer, vocab: PrunedVocab, label_names: list[str], max_length: int, task: str | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.lookup, self.pad_id = vocab.lookup, vocab.pad_id
        self.label_names = label_names
        self.max_length = max_length
        self.task = describe(task or default_task(model.per_word))

    @torch.inference_mode()
    def _forward(self, ids: np.ndarray, lengths: np.ndarray, word_index: np.ndarray | None) -> np.ndarray:
        as_tensor = torch.from_numpy
        batch = tensor_batch(as_tensor(ids), as_tensor(lengths), None if word_index is None else as_tensor(word_index))
        return self.model(batch).logits.float().numpy()


class DistilledClassifier(DistilledStudent):
    """A student that gives one label per text: `predict(texts)` gives label names."""


class DistilledTagger(DistilledStudent):
    """A student that gives one tag per word: `predict(sentences)` gives one IOB2 tag per word.

    A sentence is a list of words, or a string split on whitespace (a lone string is one sentence).
    Every word is tagged, however long the sentence (the student reads it whole; `max_length` does not cut it).
    """


def predictor_class(task: str) -> type[DistilledStudent]:
    """The predictor of a task's students: per word, or per text."""
    return DistilledTagger if describe(task).per_word else DistilledClassifier


def save_student(
    folder: str | Path, model: Student, tokenizer, vocab: PrunedVocab, label_names: list[str], max_length: int, task: str | None = None
) -> Path:
    """Write weights, config and tokenizer into a staging folder, then the manifest of their checksums,
    then move it into place as `folder` (a killed or failed save leaves the previous student or none, never half of one)."""
    folder = Path(folder)
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    tensors["vocab.teacher_ids"] = torch.as_tensor(vocab.teacher_ids)
    meta = {
        "arch": model.arch,
        "task": describe(task or default_task(model.per_word)).name,
        "model": model.config(),
        "label_names": label_names,
        "max_length": max_length,
        "teacher_vocab_size": vocab.teacher_vocab_size,
        "unk_teacher_id": int(vocab.teacher_ids[vocab.unk_id]),
        "pad_teacher_id": int(vocab.teacher_ids[vocab.pad_id]),
    }
    with staged_folder(folder) as tmp:
        save_file(tensors, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        tokenizer.save_pretrained(str(tmp))
        write_manifest(tmp, STUDENT_FORMAT)
    return folder


def verify_student_files(folder: Path) -> None:
    """Refuse a student folder whose files are missing or altered since it was saved."""
    verify_manifest(folder, STUDENT_FORMAT, (WEIGHTS, CONFIG), "student")


def load_student(folder: str | Path) -> DistilledStudent:
    """Load a student saved by xdistil, after verifying its files; returns an object with
    `predict(texts)` (classification) or `predict(sentences)` (tagging)."""
    folder = Path(folder)
    if not folder.is_dir() or not (folder / CONFIG).is_file():
        raise XDistilError(f"{folder}: not an xdistil student (expected a folder with {CONFIG}, {WEIGHTS} and {MANIFEST})")
    verify_student_files(folder)
    meta = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    tensors = load_file(str(folder / WEIGHTS))
    vocab = PrunedVocab(
        tensors.pop("vocab.teacher_ids").tolist(), meta["teacher_vocab_size"], meta["unk_teacher_id"], meta["pad_teacher_id"]
    )
    try:
        model = family(meta.get("arch", "bilstm")).from_config(meta["model"])
        model.load_state_dict(tensors)
    except (ValueError, RuntimeError) as err:
        raise XDistilError(f"{folder / WEIGHTS}: does not fit {CONFIG} ({str(err).splitlines()[0]})") from None
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    _check_consistent(folder, model, tokenizer, vocab, meta)
    task = meta.get("task") or default_task(model.per_word)
    try:
        describe(task)
    except ValueError as err:
        raise XDistilError(f"{folder / CONFIG}: {err} (register the task before loading its students)") from None
    return predictor_class(task)(model, tokenizer, vocab, meta["label_names"], meta["max_length"], task)


def _check_consistent(folder: Path, model: Student, tokenizer, vocab: PrunedVocab, meta: dict) -> None:
    """The parts agree: the tokenizer is the one the vocabulary was pruned from, every vocabulary entry
    has an embedding row, and there is one label name per output."""
    if len(tokenizer) != vocab.teacher_vocab_size:
        raise XDistilError(f"{folder}: the tokenizer has {len(tokenizer):,} word pieces, the student was trained with "
                           f"{vocab.teacher_vocab_size:,}; expected its own tokenizer files")
    rows = model.embedding_parameters()[0].shape[0]
    if rows != len(vocab):
        raise XDistilError(f"{folder / WEIGHTS}: {rows:,} embedding rows for a vocabulary of {len(vocab):,}")
    with torch.inference_mode():
        width = model.eval()(model.example_inputs()).logits.shape[-1]
    if width != len(meta["label_names"]):
        raise XDistilError(f"{folder / CONFIG}: {len(meta['label_names'])} label names for a student with {width} outputs")
