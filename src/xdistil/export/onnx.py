"""Export a saved student to ONNX (dynamic batch and sequence axes), optionally int8, verified.

The exported graph is the family's `export_module()`; before anything is written as final, the
ONNX model's logits are compared with the PyTorch student's on random batches of several shapes,
and an export that does not reproduce them (fp32: within 1e-4) is refused rather than shipped.
The folder carries a manifest of its files' checksums, checked whenever it is loaded.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from xdistil.errors import XDistilError
from xdistil.export.runtime import MODEL, ONNX_CONFIG, ONNX_FORMAT, OnnxStudent, is_exported_folder
from xdistil.manifest import MANIFEST, write_manifest
from xdistil.progress import log
from xdistil.atomic import atomic_write_text, staged_folder
from xdistil.student.inputs import length_mask, tensor_batch
from xdistil.student.io import DistilledStudent, load_student

TOLERANCE = 1e-4
OPSET = 17


def _inputs(student: DistilledStudent, batch: int, length: int, seed: int) -> tuple[torch.Tensor, ...]:
    """A random batch of real ids with unequal lengths (and word positions for a tagger)."""
    generator = torch.Generator().manual_seed(seed)
    rows = len(student.vocab)
    ids = torch.randint(0, rows, (batch, length), generator=generator)
    lengths = torch.randint(max(1, length // 2), length + 1, (batch,), generator=generator)
    lengths[0] = length
    ids[~length_mask(lengths, length)] = student.vocab.pad_id
    if not student.task.per_word:
        return ids, lengths
    words = (lengths // 2).clamp(min=1)
    index = torch.zeros((batch, int(words.max())), dtype=torch.long)
    for row in range(batch):
        index[row, : words[row]] = torch.sort(torch.randperm(int(lengths[row]), generator=generator)[: words[row]]).values
    return ids, lengths, index


def _names(student: DistilledStudent) -> list[str]:
    return ["input_ids", "lengths", "word_index"] if student.task.per_word else ["input_ids", "lengths"]


def max_difference(student: DistilledStudent, session_folder: Path) -> float:
    """Largest |ONNX - PyTorch| logit over random batches of several shapes (through the runtime's session)."""
    runtime = OnnxStudent(session_folder)
    exported = student.model.export_module().eval()
    worst = 0.0
    for seed, (batch, length) in enumerate([(1, 5), (3, 17), (8, 40), (2, 1)]):
        tensors = _inputs(student, batch, length, seed)
        with torch.inference_mode():
            expected = exported(*tensors).numpy()
            reference = student.model(tensor_batch(*tensors)).logits.numpy()
        worst = max(worst, float(np.abs(expected - reference).max()))  # the export module is the student itself
        feed = {name: t.numpy().astype(np.int64) for name, t in zip(_names(student), tensors)}
        got = runtime.session.run(["logits"], feed)[0]
        worst = max(worst, float(np.abs(got - reference).max()))
    return worst


def export_onnx(source: str | Path, out: str | Path, int8: bool = False) -> Path:
    """Export the student in `source` (a student folder, or a run folder holding `student/`) to `out`."""
    source = Path(source)
    if (source / "student").is_dir():
        source = source / "student"
    student = load_student(source)
    student.model.eval()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise XDistilError(f"{out}: --out names an existing file; expected a folder for the exported student")
    if out.is_dir() and any(out.iterdir()) and not is_exported_folder(out):
        raise XDistilError(f"{out}: not empty and not a folder xdistil exported (no valid {MANIFEST} of an exported student, or "
                           "files it does not list); nothing was deleted - choose a new folder for --out")
    names = _names(student)
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "lengths": {0: "batch"}, "logits": {0: "batch"}}
    if "word_index" in names:
        axes.update({"word_index": {0: "batch", 1: "words"}, "logits": {0: "batch", 1: "words"}})
    vocab = student.vocab
    meta = {
        "format": "xdistil-onnx/1", "task": student.task.name,
        "arch": student.model.arch, "label_names": student.label_names, "max_length": student.max_length,
        "precision": "fp32", "pad_id": vocab.pad_id, "unk_teacher_id": int(vocab.teacher_ids[vocab.unk_id]),
        "vocab_lookup": vocab.lookup.tolist(),
    }
    with staged_folder(out) as tmp:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            # in eval mode: the exporter restores the module's mode afterwards, and the student is shared with it
            torch.onnx.export(student.model.export_module().eval(), _inputs(student, 2, 7, 0), str(tmp / MODEL), input_names=names,
                              output_names=["logits"], dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        shutil.copy(source / "tokenizer.json", tmp / "tokenizer.json")
        atomic_write_text(tmp / ONNX_CONFIG, json.dumps(meta))
        write_manifest(tmp, ONNX_FORMAT)
        difference = max_difference(student, tmp)
        if difference > TOLERANCE:
            raise XDistilError(f"{source}: the ONNX export differs from the PyTorch student by {difference:.2e} (> {TOLERANCE}); not exported")
        log(f"export: ONNX logits match the PyTorch student's within {difference:.1e}")
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            fp32 = tmp / "model-fp32.onnx"
            (tmp / MODEL).rename(fp32)
            quantize_dynamic(str(fp32), str(tmp / MODEL), weight_type=QuantType.QInt8)
            fp32.unlink()
            meta["precision"] = "int8"
            atomic_write_text(tmp / ONNX_CONFIG, json.dumps(meta))
            write_manifest(tmp, ONNX_FORMAT)
            log(f"export: int8 (dynamic quantisation); largest logit change on random batches {max_difference(student, tmp):.2e}")
    return out
