"""A chunked on-disk cache of teacher outputs, written atomically and verified on load.

Layout: `manifest.json` plus `chunk-NNNNN.safetensors`, one per `chunk_size` texts, each holding
`logits` (float32), `repr` (float16 or float32) and the teacher's token ids (`input_ids` flat,
`lengths`), with its fingerprint, range, truncation count and a checksum of its tensors in the
file's metadata. Readers go chunk by chunk, so memory stays bounded whatever the set's size.
A chunk is written to a temporary file and renamed into
place, so a killed run leaves only whole chunks; a chunk that fails verification is redone.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from xdistil.errors import XDistilError
from xdistil.progress import bar, log
from xdistil.student.inputs import tokenize
from xdistil.teacher.inference import teacher_outputs

MANIFEST = "manifest.json"


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def atomic_write_json(path: Path, data: dict) -> None:
    """Write JSON to a temporary file and rename it into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class AnnotationSpec:
    """How the teacher labels texts; part of the cache's fingerprint."""

    max_length: int
    batch_size: int
    chunk_size: int
    layer: int
    pooling: str
    dtype: str


class TransferCache:
    """Teacher outputs for a list of texts, in chunk files under `folder`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @cached_property
    def manifest(self) -> dict:
        """The cache's settings; read once (annotation writes it before anything reads it)."""
        path = self.folder / MANIFEST
        if not path.is_file():
            raise XDistilError(f"{self.folder}: no transfer cache here (run annotation first)")
        return json.loads(path.read_text(encoding="utf-8"))

    def chunk_path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:05d}.safetensors"

    def read_chunk(self, index: int) -> dict[str, torch.Tensor] | None:
        """The chunk's tensors if the file is whole and belongs to this cache, else None."""
        path = self.chunk_path(index)
        if not path.is_file():
            return None
        manifest = self.manifest
        try:
            tensors = load_file(str(path))
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
        except (SafetensorError, OSError, ValueError, RuntimeError):
            return None
        start = index * manifest["chunk_size"]
        expected_rows = min(manifest["n"], start + manifest["chunk_size"]) - start
        if (
            meta.get("fingerprint") != manifest["fingerprint"]
            or meta.get("checksum") != _checksum(tensors)
            or set(tensors) != {"logits", "repr", "input_ids", "lengths"}
            or tensors["logits"].shape[0] != expected_rows
        ):
            return None
        return tensors

    def num_chunks(self) -> int:
        manifest = self.manifest
        return (manifest["n"] + manifest["chunk_size"] - 1) // manifest["chunk_size"]

    def __len__(self) -> int:
        return self.manifest["n"]

    def verified_chunk(self, index: int) -> dict[str, torch.Tensor]:
        """The chunk's tensors; a missing or damaged chunk is a one-line error (annotation would redo it)."""
        tensors = self.read_chunk(index)
        if tensors is None:
            raise XDistilError(f"{self.chunk_path(index)}: missing or damaged chunk; re-run annotation to redo it")
        return tensors

    def chunk(self, index: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """(token id arrays, logits, representations) of one verified chunk."""
        tensors = self.verified_chunk(index)
        flat = tensors["input_ids"].numpy()
        ids = np.split(flat, np.cumsum(tensors["lengths"].numpy())[:-1])
        return ids, tensors["logits"].numpy(), tensors["repr"].numpy()

    def chunk_rows(self, index: int) -> range:
        size = self.manifest["chunk_size"]
        return range(index * size, min(len(self), (index + 1) * size))

    def load(self, stop: int | None = None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """(token ids, logits (N, C) float32, representations (N, H)) of the first `stop` rows (all by default).

        For the small parts (dev, test, the labeled rows); the transfer set is read chunk by chunk.
        """
        stop = len(self) if stop is None else stop
        ids: list[np.ndarray] = []
        logits, reps = [], []
        for index in range(self.num_chunks()):
            rows = self.chunk_rows(index)
            if rows.start >= stop:
                break
            chunk_ids, chunk_logits, chunk_reps = self.chunk(index)
            keep = min(stop, rows.stop) - rows.start
            ids.extend(chunk_ids[:keep])
            logits.append(chunk_logits[:keep])
            reps.append(chunk_reps[:keep])
        return ids, np.concatenate(logits), np.concatenate(reps)

    def token_counts(self, vocab_size: int) -> np.ndarray:
        """How often each teacher token id occurs over the whole cache, counted chunk by chunk."""
        counts = np.zeros(vocab_size, dtype=np.int64)
        for index in range(self.num_chunks()):
            counts += np.bincount(self.verified_chunk(index)["input_ids"].numpy(), minlength=vocab_size)
        return counts

    def truncated(self) -> int:
        """How many texts were longer than max_length and cut (from the chunks' metadata; no tensor is read)."""
        total = 0
        for index in range(self.num_chunks()):
            with safe_open(str(self.chunk_path(index)), framework="pt") as handle:
                total += int((handle.metadata() or {}).get("truncated", 0))
        return total


def annotate(
    model: torch.nn.Module,
    tokenizer,
    texts: Iterable[str],
    count: int,
    folder: str | Path,
    spec: AnnotationSpec,
    fingerprint: str,
    label_order: Sequence[int] | None = None,
    description: str = "annotating",
) -> TransferCache:
    """Label `count` texts from `texts` (any iterable, read once) into `folder` chunk by chunk,
    skipping chunks already done for the same fingerprint."""
    cache = TransferCache(folder)
    cache.folder.mkdir(parents=True, exist_ok=True)
    manifest_path = cache.folder / MANIFEST
    manifest = {"fingerprint": fingerprint, "n": count, "chunk_size": spec.chunk_size, **spec.__dict__}
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        if old.get("fingerprint") != fingerprint:
            raise XDistilError(
                f"{cache.folder}: holds annotations made with another teacher, data or settings "
                f"(fingerprint {old.get('fingerprint')} != {fingerprint}); use a new output folder"
            )
    atomic_write_json(manifest_path, manifest)
    chunks = cache.num_chunks()
    todo = {i for i in range(chunks) if cache.read_chunk(i) is None}
    if len(todo) < chunks:
        log(f"{description}: {chunks - len(todo)} of {chunks} chunks already done, resuming")
    if not todo:
        return cache
    dtype = torch.float16 if spec.dtype == "float16" else torch.float32
    truncated = 0
    remaining = sum(len(cache.chunk_rows(i)) for i in todo)
    stream = iter(texts)
    with bar(remaining, description) as progress:
        for index in range(chunks):
            chunk_texts = list(itertools.islice(stream, len(cache.chunk_rows(index))))
            if index not in todo:
                continue
            token_ids, cut = tokenize(tokenizer, chunk_texts, spec.max_length)
            truncated += cut
            logits = reps = None
            for indices, batch_logits, batch_reps in teacher_outputs(
                model, token_ids, tokenizer.pad_token_id, spec.batch_size, spec.layer, spec.pooling, label_order
            ):
                if logits is None:
                    logits = np.zeros((len(chunk_texts), batch_logits.shape[1]), dtype=np.float32)
                    reps = np.zeros((len(chunk_texts), batch_reps.shape[1]), dtype=np.float32)
                logits[indices] = batch_logits
                reps[indices] = batch_reps
                progress.update(0, advance=len(indices))
            tensors = {
                "logits": torch.from_numpy(logits),
                "repr": torch.from_numpy(reps).to(dtype),
                "input_ids": torch.tensor([t for ids in token_ids for t in ids], dtype=torch.int32),
                "lengths": torch.tensor([len(ids) for ids in token_ids], dtype=torch.int32),
            }
            meta = {"fingerprint": fingerprint, "start": str(index * spec.chunk_size), "truncated": str(cut), "checksum": _checksum(tensors)}
            path = cache.chunk_path(index)
            tmp = path.with_name(path.name + ".tmp")
            save_file(tensors, str(tmp), metadata=meta)
            os.replace(tmp, path)
    if truncated:
        log(f"{description}: {truncated} texts longer than {spec.max_length} word pieces were truncated")
    return cache
