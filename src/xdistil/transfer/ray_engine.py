"""Annotation on a Ray cluster (`transfer.engine: ray`): Ray Data streams the chunks still to do, a pool of
stateful actors (one teacher each) labels them and writes each chunk with its fingerprint and checksum,
exactly as the local path does, so resume, verification and the rest of the pipeline are unchanged.
Ray restarts a failed actor and retries its chunk; a chunk already written is never handed out again (see `annotate`).
The run folder must be on storage every worker sees (any local cluster does)."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable

import numpy as np
import torch

from xdistil.config import RayConfig, TransferConfig
from xdistil.errors import XDistilError
from xdistil.progress import bar
from xdistil.transfer.cache import AnnotationSpec, ChunkEngine, Labeler, TransferCache, label_chunk, write_chunk


class ChunkLabeler:
    """A Ray actor: holds one labeler (a teacher it loads itself) and writes every chunk of texts it is given into the cache."""

    def __init__(self, labeler: Labeler, folder: str, spec: AnnotationSpec, threads: int):
        torch.set_num_threads(threads)
        self.labeler, self.cache, self.spec = labeler, TransferCache(folder), spec

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = []
        for index, payload in zip(batch["index"], batch["texts"]):
            texts = json.loads(payload)
            tensors, cut = label_chunk(self.labeler, texts, self.spec)
            write_chunk(self.cache, int(index), tensors, cut)
            rows.append(len(texts))
        return {"index": batch["index"], "rows": np.array(rows)}


def ray_engine(settings: RayConfig) -> ChunkEngine:
    """The chunk engine that runs on Ray with `settings` (cluster address, actors, CPUs and GPUs each); each actor
    gets the labeler's copy for another process (a teacher labeler's actors load the saved teacher themselves)."""

    def run(labeler: Labeler, cache: TransferCache, chunks: Iterable[tuple[int, list]], spec: AnnotationSpec, remaining: int) -> None:
        try:
            import ray
        except ImportError:
            raise XDistilError("transfer.engine is ray but Ray is not installed: pip install 'xdistil[ray]'") from None
        if not ray.is_initialized():
            ray.init(address=settings.address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # xdistil's own bar and log say what happens
        ray.data.DataContext.get_current().enable_progress_bars = False
        device = "cuda" if settings.num_gpus > 0 else "cpu"
        arguments = {"labeler": labeler.for_worker(device), "folder": str(cache.folder), "spec": spec,
                     "threads": max(1, int(settings.num_cpus))}
        chunks = iter(chunks)
        with bar(remaining, f"annotating {cache.folder.name} on ray") as progress:
            while window := list(itertools.islice(chunks, settings.window)):
                items = [{"index": index, "texts": json.dumps(texts, ensure_ascii=False)} for index, texts in window]
                labelled = ray.data.from_items(items).map_batches(
                    ChunkLabeler, fn_constructor_kwargs=arguments, batch_size=1, compute=ray.data.ActorPoolStrategy(size=settings.workers),
                    num_cpus=settings.num_cpus, num_gpus=settings.num_gpus,
                )  # Ray Data restarts a dead actor and retries its chunk (max_restarts=-1 by default for actor pools)
                for row in labelled.iter_rows():
                    progress.update(0, advance=int(row["rows"]))

    return run


def annotation_engine(transfer: TransferConfig) -> ChunkEngine | None:
    """Who annotates, by `transfer.engine`: None for this process (or each of several launched), else Ray (imported only then)."""
    if transfer.engine != "ray":
        return None
    return ray_engine(transfer.ray)
