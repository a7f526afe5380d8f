"""A chunked on-disk cache of teacher outputs, written atomically and verified on load.

Layout: `manifest.json` plus `chunk-NNNNN.safetensors`, one per `chunk_size` texts, each holding
`logits` (float32), `repr` (float16 or float32) and the teacher's token ids (`input_ids` flat,
`lengths`), with its fingerprint, range, truncation count and a checksum of its tensors in the
file's metadata. For tagging, `logits` and `repr` have one row per word (the rows' words in
order), `words` counts each row's words and `starts` (flat) gives each word's first-piece
position in its row's `input_ids`; a row is a whole sentence, however long. Readers go chunk by chunk, so memory stays bounded whatever the set's size.
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
from xdistil.teacher.alignment import encode_words
from xdistil.teacher.inference import tagger_outputs, teacher_outputs

MANIFEST = "manifest.json"
TENSORS = {
    "classification": {"logits", "repr", "input_ids", "lengths"},
    "tagging": {"logits", "repr", "input_ids", "lengths", "words", "starts"},
}


def _split(flat: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(counts)[:-1]) if len(counts) else []


@dataclass
class CacheRows:
    """Rows of a cache: teacher token ids per row, logits and representations.

    Classification: `logits` (rows, C) and `reps` (rows, H). Tagging: one row of `logits` and
    `reps` per word, rows' words in order, and `starts[r]` the first-piece positions of row r's words.
    """

    ids: list[np.ndarray]
    logits: np.ndarray
    reps: np.ndarray
    starts: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def word_counts(self) -> np.ndarray:
        """Words per row (tagging)."""
        assert self.starts is not None
        return np.fromiter((len(s) for s in self.starts), dtype=np.int64, count=len(self.starts))

    def head(self, rows: int) -> CacheRows:
        """The first `rows` rows."""
        if self.starts is None:
            return CacheRows(self.ids[:rows], self.logits[:rows], self.reps[:rows])
        words = int(self.word_counts()[:rows].sum())
        return CacheRows(self.ids[:rows], self.logits[:words], self.reps[:words], self.starts[:rows])

    @staticmethod
    def concat(parts: Sequence[CacheRows]) -> CacheRows:
        starts = None if parts[0].starts is None else [s for p in parts for s in p.starts]  # type: ignore[union-attr]
        return CacheRows(
            [x for p in parts for x in p.ids], np.concatenate([p.logits for p in parts]), np.concatenate([p.reps for p in parts]), starts
        )


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
    task: str = "classification"


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
            or set(tensors) != TENSORS[manifest.get("task", "classification")]
            or tensors["lengths"].shape[0] != expected_rows
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

    def chunk(self, index: int) -> CacheRows:
        """The rows of one verified chunk."""
        tensors = self.verified_chunk(index)
        ids = _split(tensors["input_ids"].numpy(), tensors["lengths"].numpy())
        starts = _split(tensors["starts"].numpy(), tensors["words"].numpy()) if "starts" in tensors else None
        return CacheRows(ids, tensors["logits"].numpy(), tensors["repr"].numpy(), starts)

    def chunk_rows(self, index: int) -> range:
        size = self.manifest["chunk_size"]
        return range(index * size, min(len(self), (index + 1) * size))

    def load(self, stop: int | None = None) -> CacheRows:
        """The first `stop` rows (all by default) in memory.

        For the small parts (dev, test, the labeled rows); the transfer set is read chunk by chunk.
        """
        stop = len(self) if stop is None else stop
        parts = []
        for index in range(self.num_chunks()):
            rows = self.chunk_rows(index)
            if rows.start >= stop:
                break
            parts.append(self.chunk(index).head(min(stop, rows.stop) - rows.start))
        return CacheRows.concat(parts)

    def token_counts(self, vocab_size: int) -> np.ndarray:
        """How often each teacher token id occurs over the whole cache, counted chunk by chunk."""
        counts = np.zeros(vocab_size, dtype=np.int64)
        for index in range(self.num_chunks()):
            counts += np.bincount(self.verified_chunk(index)["input_ids"].numpy(), minlength=vocab_size)
        return counts

    def truncated(self) -> int:
        """How many texts were longer than max_length: cut (classification) or run as windows and
        stitched (tagging); from the chunks' metadata, no tensor is read."""
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
            annotate_chunk = _tag_chunk if spec.task == "tagging" else _classify_chunk
            tensors, cut = annotate_chunk(model, tokenizer, chunk_texts, spec, label_order, lambda n: progress.update(0, advance=n))
            truncated += cut
            tensors["repr"] = tensors["repr"].to(dtype)
            meta = {"fingerprint": fingerprint, "start": str(index * spec.chunk_size), "truncated": str(cut), "checksum": _checksum(tensors)}
            path = cache.chunk_path(index)
            tmp = path.with_name(path.name + ".tmp")
            save_file(tensors, str(tmp), metadata=meta)
            os.replace(tmp, path)
    if truncated:
        how = "split into windows and stitched back" if spec.task == "tagging" else "truncated"
        log(f"{description}: {truncated} texts longer than {spec.max_length} word pieces were {how}")
    return cache


def _classify_chunk(model, tokenizer, texts: list[str], spec: AnnotationSpec, label_order, advance) -> tuple[dict[str, torch.Tensor], int]:
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


def _tag_chunk(model, tokenizer, sentences: list[list[str]], spec: AnnotationSpec, label_order, advance) -> tuple[dict[str, torch.Tensor], int]:
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
