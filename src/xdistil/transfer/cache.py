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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import xdistil.distributed as distributed
from xdistil.errors import XDistilError
from xdistil.fingerprint import fingerprint as _fingerprint
from xdistil.progress import bar, log
from xdistil.atomic import atomic_write, atomic_write_json
from xdistil.storage import read_safetensors
from xdistil.tasks.description import cache_tensors

MANIFEST = "manifest.json"


def _split(flat: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(counts)[:-1]) if len(counts) else []


@dataclass
class CacheRows:
    """Rows of a cache: teacher token ids per row, logits and representations.

    Classification: `logits` (rows, C) and `representations` (rows, H). Tagging: one row of `logits` and
    `representations` per word, rows' words in order, and `starts[r]` the first-piece positions of row r's words.
    """

    ids: list[np.ndarray]
    logits: np.ndarray
    representations: np.ndarray
    starts: list[np.ndarray] | None = None
    teacher_input_ids: list[np.ndarray] | None = None  # the teacher's own token ids, when `ids` are a student's

    def __len__(self) -> int:
        return len(self.ids)

    def word_counts(self) -> np.ndarray:
        """Words per row (tagging)."""
        assert self.starts is not None
        return np.fromiter((len(s) for s in self.starts), dtype=np.int64, count=len(self.starts))

    def head(self, rows: int) -> CacheRows:
        """The first `rows` rows."""
        teacher_input_ids = None if self.teacher_input_ids is None else self.teacher_input_ids[:rows]
        if self.starts is None:
            return CacheRows(self.ids[:rows], self.logits[:rows], self.representations[:rows], None, teacher_input_ids)
        words = int(self.word_counts()[:rows].sum())
        return CacheRows(self.ids[:rows], self.logits[:words], self.representations[:words], self.starts[:rows], teacher_input_ids)

    @staticmethod
    def concat(parts: Sequence[CacheRows]) -> CacheRows:
        starts = None if parts[0].starts is None else [s for p in parts for s in p.starts]  # type: ignore[union-attr]
        teacher_input_ids = None if parts[0].teacher_input_ids is None else [x for p in parts for x in p.teacher_input_ids]  # type: ignore[union-attr]
        return CacheRows(
            [x for p in parts for x in p.ids], np.concatenate([p.logits for p in parts]), np.concatenate([p.representations for p in parts]), starts,
            teacher_input_ids,
        )


META_KEY = "xdistil"  # a chunk's metadata, as one sorted JSON string


def chunk_metadata(stored: dict[str, str] | None) -> dict[str, str]:
    """A chunk's metadata (fingerprint, start, truncated, checksum); chunks written before it was one
    JSON string kept the keys as they are."""
    stored = stored or {}
    if META_KEY not in stored:
        return stored
    try:
        meta = json.loads(stored[META_KEY])
    except ValueError:
        return {}  # unreadable: fails verification, so the chunk is redone
    return meta if isinstance(meta, dict) else {}


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class AnnotationSpec:
    """How the teacher labels texts; part of the cache's fingerprint."""

    max_length: int
    batch_size: int
    chunk_size: int
    layer: int | None  # None for a token-only cache
    pooling: str | None
    dtype: str
    task: str = "classification"  # which tensors a chunk holds (see tasks.description.cache_tensors)
    precision: str = "fp32"  # the teacher's arithmetic while annotating (transfer.teacher_precision)
    without: tuple[str, ...] = ()  # targets the labeler does not give (a labeler outside the process: no "repr")

    @classmethod
    def from_config(cls, config, layer: int | None, pooling: str | None) -> AnnotationSpec:
        """The spec of a run config (a RunConfig) with the resolved teacher layer and pooling."""
        teacher, transfer = config.teacher, config.transfer
        on_gpu = config.device != "cpu" and torch.cuda.is_available()
        return cls(teacher.max_length, transfer.batch_size, transfer.chunk_size, layer, pooling, transfer.dtype, config.task,
                   transfer.precision(on_gpu))

    def identity(self) -> dict:
        """What the cache's fingerprint and manifest record: the precision with its recipe, and the targets
        left out (the defaults, fp32 and every target, are left out, so caches made before those settings stay valid)."""
        from xdistil.teacher.precision import RECIPES

        values = {k: v for k, v in self.__dict__.items() if k not in ("precision", "without")}
        if self.without:
            values["without"] = list(self.without)
        return values if self.precision == "fp32" else {**values, "precision": f"{self.precision}: {RECIPES[self.precision]}"}

    def tensors(self) -> frozenset[str]:
        """The tensors each chunk holds."""
        return cache_tensors(self.task) - set(self.without)


# a task's annotator: (model, tokenizer, texts of one chunk, spec, label order, advance(n)) -> (tensors, texts truncated or split)
Annotator = Callable[..., tuple[dict[str, torch.Tensor], int]]


class Labeler(Protocol):
    """What fills a cache's chunks (implementations in `transfer/labelers.py`): the fine-tuned teacher, a student's
    tokenizer alone, a file of labels, a user's function."""

    fingerprint: str  # everything its labels depend on (part of each cache's fingerprint)
    provides: frozenset[str]  # the targets its chunks hold: {"logits", "repr"}, or fewer

    def label(self, texts: list, spec: AnnotationSpec, advance: Callable[[int], None]) -> tuple[dict[str, torch.Tensor], int]:
        """One chunk's tensors, and how many of its texts were cut or split; `advance(n)` as texts are done."""
        ...

    def for_worker(self, device: str) -> Labeler:
        """A copy to hand to another process (a Ray actor), which loads there what it needs (a model on `device`)."""
        ...


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
        read = read_safetensors(self.chunk_path(index))
        if read is None:
            return None
        tensors, meta = read[0], chunk_metadata(read[1])
        manifest = self.manifest
        start = index * manifest["chunk_size"]
        expected_rows = min(manifest["n"], start + manifest["chunk_size"]) - start
        if (
            meta.get("fingerprint") != manifest["fingerprint"]
            or meta.get("checksum") != _checksum(tensors)
            or set(tensors) != cache_tensors(manifest.get("task", "classification")) - set(manifest.get("without", ()))
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
        """The rows of one verified chunk (a token-only chunk has zero-width logits and representations)."""
        tensors = self.verified_chunk(index)
        ids = _split(tensors["input_ids"].numpy(), tensors["lengths"].numpy())
        starts = _split(tensors["starts"].numpy(), tensors["words"].numpy()) if "starts" in tensors else None
        empty = np.zeros((len(ids) if starts is None else int(tensors["words"].sum()), 0), dtype=np.float32)
        logits = tensors["logits"].numpy() if "logits" in tensors else empty
        return CacheRows(ids, logits, tensors["repr"].numpy() if "repr" in tensors else empty, starts, ids)

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
                total += int(chunk_metadata(handle.metadata()).get("truncated", 0))
        return total


def label_chunk(labeler: Labeler, texts: list, spec: AnnotationSpec, advance: Callable[[int], None] = lambda n: None,
                ) -> tuple[dict[str, torch.Tensor], int]:
    """The tensors of one chunk of texts (representations in the cache's dtype) and how many were cut; a labeler
    that gives other tensors than the cache holds is one clear error, before anything is written."""
    tensors, cut = labeler.label(texts, spec, advance)
    if set(tensors) != spec.tensors():
        raise XDistilError(f"the labeler gave {sorted(tensors)} for a cache of {sorted(spec.tensors())}")
    if "repr" in tensors:
        tensors["repr"] = tensors["repr"].to(torch.float16 if spec.dtype == "float16" else torch.float32)
    return tensors, cut


def write_chunk(cache: TransferCache, index: int, tensors: dict[str, torch.Tensor], cut: int) -> None:
    """Write one chunk with its fingerprint and checksum: to a temporary file, renamed into place."""
    manifest = cache.manifest
    meta = {"fingerprint": manifest["fingerprint"], "start": str(index * manifest["chunk_size"]), "truncated": str(cut),
            "checksum": _checksum(tensors)}
    # one metadata key: safetensors orders several in a per-process random order, and the same chunk must be the same bytes
    atomic_write(cache.chunk_path(index), lambda tmp: save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta, sort_keys=True)}))


# runs the chunks to do elsewhere (a Ray cluster): (labeler, cache, [(index, texts)], spec, rows to do); it writes
# each chunk with `write_chunk`
ChunkEngine = Callable[..., None]


def annotate(
    labeler: Labeler,
    texts: Iterable,
    count: int,
    folder: str | Path,
    spec: AnnotationSpec,
    fingerprint: str,
    description: str = "annotating",
    changed: str | None = None,
    engine: ChunkEngine | None = None,
) -> TransferCache:
    """Label `count` texts from `texts` (any iterable, read once) into `folder` chunk by chunk with `labeler`,
    skipping chunks already done for the same fingerprint.

    With several processes (see distributed.py) each annotates the chunks whose index modulo the number
    of processes is its rank; the main process writes the manifest. With `engine`, the chunks to do are
    handed to it instead (e.g. a Ray cluster), which writes them with `write_chunk`."""
    cache = TransferCache(folder)
    manifest_path = cache.folder / MANIFEST
    manifest = {"fingerprint": fingerprint, "n": count, "chunk_size": spec.chunk_size, **spec.identity()}
    if distributed.is_main():
        cache.folder.mkdir(parents=True, exist_ok=True)
        old = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else None
        if old is not None and old.get("fingerprint") != fingerprint:  # another teacher, data or settings made them: afresh
            if cache.folder.is_symlink() or cache.folder.parent.is_symlink():  # another run folder's (a sweep's, a benchmark's)
                raise XDistilError(f"{cache.folder}: this cache is linked from {cache.folder.resolve()} and was made for other "
                                   "settings; a linked cache is never rewritten: give this run a cache of its own")
            log(f"{description}: redone ({changed or 'the teacher, the data or the annotation settings changed'})")
            for stale in cache.folder.glob("chunk-*.safetensors"):
                stale.unlink()
        if old != manifest:  # a finished cache is left untouched
            atomic_write_json(manifest_path, manifest)
        for torn in cache.folder.glob("chunk-*.tmp"):  # what killed writers left (nobody writes before the barrier)
            torn.unlink(missing_ok=True)
    distributed.barrier()  # the manifest is in place and stale chunks are gone before anyone reads
    chunks = cache.num_chunks()
    todo = {i for i in range(chunks) if cache.read_chunk(i) is None}
    distributed.barrier()  # every process has its list before any writes
    if len(todo) < chunks:
        log(f"{description}: {chunks - len(todo)} of {chunks} chunks already done, resuming")
    mine = {i for i in todo if i % distributed.world_size() == distributed.rank()}
    stream = iter(texts)
    pending = ((index, list(itertools.islice(stream, len(cache.chunk_rows(index))))) for index in range(chunks))
    if engine is not None:
        if distributed.is_main() and todo:
            remaining = sum(len(cache.chunk_rows(i)) for i in todo)
            engine(labeler, cache, ((i, t) for i, t in pending if i in todo), spec, remaining)
    elif mine:
        with bar(sum(len(cache.chunk_rows(i)) for i in mine), description) as progress:
            for index, chunk_texts in pending:
                if index in mine:
                    tensors, cut = label_chunk(labeler, chunk_texts, spec, lambda n: progress.update(0, advance=n))
                    write_chunk(cache, index, tensors, cut)
    distributed.barrier()  # every chunk is written before anyone reads the cache
    return cache


@dataclass
class Annotation:
    """The teacher's outputs for each named part of a run (transfer, dev, test), and what happened to over-long texts."""

    caches: dict[str, TransferCache]
    notes: list[str]


def annotate_parts(
    labeler: Labeler,
    parts: dict[str, tuple[Iterable, int, str]],
    folder: Path,
    spec: AnnotationSpec,
    long_text: str,
    who: str = "teacher labels",
    changed: str | None = None,
    engine: ChunkEngine | None = None,
) -> Annotation:
    """Annotate each part (texts, count, fingerprint of the texts) into `folder/<name>` with `labeler`, resuming
    finished chunks; a note says how many texts were longer than the teacher's max_length and what became of them.
    (`changed` says why, in the log, when a part made for another fingerprint is redone.)"""
    caches: dict[str, TransferCache] = {}
    notes: list[str] = []
    for name, (texts, count, texts_fp) in parts.items():
        fp = part_fingerprint(labeler, spec, texts_fp)
        caches[name] = annotate(labeler, texts, count, folder / name, spec, fp, f"{who} {name}", changed, engine)
        cut = caches[name].truncated()
        if cut:
            notes.append(f"{name}: {cut} texts longer than {spec.max_length} word pieces were {long_text}")
            log(f"{who} {notes[-1]}")
    return Annotation(caches, notes)


def part_fingerprint(labeler: Labeler, spec: AnnotationSpec, texts_fp: str) -> str:
    """The fingerprint of a part's cache: who labels, how, and which texts."""
    return _fingerprint(labeler.fingerprint, spec.identity(), texts_fp)


class PairedCache(TransferCache):
    """A teacher cache read together with a student's token cache of the same texts and chunks: rows
    hold the student's token ids (and word starts) beside the teacher's logits and representations."""

    def __init__(self, targets: TransferCache, inputs: TransferCache):
        super().__init__(targets.folder)
        self.inputs = inputs

    def chunk(self, index: int) -> CacheRows:
        targets, inputs = super().chunk(index), self.inputs.chunk(index)
        return CacheRows(inputs.ids, targets.logits, targets.representations, inputs.starts, targets.ids)

    def token_counts(self, vocab_size: int) -> np.ndarray:
        return self.inputs.token_counts(vocab_size)
