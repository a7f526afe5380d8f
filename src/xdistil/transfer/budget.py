"""A labeling budget: which N of the transfer texts the labeler labels, when every label costs (an LLM behind an API).

`random` draws N positions (the baseline). `diverse` covers a cheap embedding space - each text the mean of its
word pieces' input embeddings in the teacher's table, randomly projected to a few dimensions - with k-means
(k-means++ starts; min(N, MAX_CLUSTERS) clusters): each cluster gives its most central text, and the rest of
the budget is shared in proportion to the clusters' sizes, nearest the centre first. `uncertain` labels in two
rounds: about half the budget by `diverse` (ending on a chunk boundary of the transfer cache, so the final
labeling finds those chunks done and pays for no text twice); a static student - a linear softmax over the same
text vectors - learns the labeler's probabilities on them; the rest of the budget goes to the texts it is least sure
of (smallest margin between its two likeliest labels). All are seeded, so the same config labels the same texts;
the positions are saved with the cache.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

import numpy as np
import torch

from xdistil.transfer.cache import MANIFEST, TransferCache, annotate, part_fingerprint

MAX_CLUSTERS = 1024
PROJECTED = 64  # dimensions of the cheap embedding space


def budget_count(budget: int | float, pool: int) -> int:
    """How many texts a budget labels out of `pool`: a count (capped at the pool), or a fraction of it (when a float)."""
    if isinstance(budget, float):
        return min(pool, round(budget * pool))
    return min(pool, budget)


def choose_random(pool: int, count: int, seed: int) -> np.ndarray:
    """`count` of the positions 0..pool-1, drawn without replacement, in order."""
    return np.sort(np.asarray(random.Random(f"budget:{seed}").sample(range(pool), count), dtype=np.int64))


def text_vectors(texts: Iterable[str], tokenizer, table: np.ndarray, seed: int, batch: int = 1024) -> np.ndarray:
    """Each text as the mean of its word pieces' rows of `table`, projected to PROJECTED dimensions (float32, one row per text)."""
    rng = np.random.default_rng(seed)
    projection = rng.normal(size=(table.shape[1], min(PROJECTED, table.shape[1]))).astype(np.float32) / np.sqrt(table.shape[1])
    small = table.astype(np.float32) @ projection
    rows, pending = [], []

    def flush() -> None:
        for ids in tokenizer(pending, add_special_tokens=False, truncation=True, max_length=128)["input_ids"]:
            rows.append(small[ids].mean(axis=0) if ids else np.zeros(small.shape[1], np.float32))
        pending.clear()

    for text in texts:
        pending.append(text)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return np.stack(rows) if rows else np.zeros((0, small.shape[1]), np.float32)


def kmeans(points: np.ndarray, k: int, seed: int, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means from k-means++ starting points (each next one drawn in proportion to its squared distance from
    those chosen, so far-apart regions all get a centre): (each point's cluster, the centres)."""
    rng = np.random.default_rng(seed)
    squared = (points**2).sum(1)
    centres = np.empty((k, points.shape[1]), dtype=points.dtype)
    centres[0] = points[rng.integers(len(points))]
    nearest = ((points - centres[0]) ** 2).sum(1)
    for index in range(1, k):
        weights = np.maximum(nearest, 0)
        total = weights.sum()
        centres[index] = points[rng.choice(len(points), p=weights / total) if total > 0 else rng.integers(len(points))]
        nearest = np.minimum(nearest, ((points - centres[index]) ** 2).sum(1))
    for _ in range(iterations):
        labels = (squared[:, None] - 2 * points @ centres.T + (centres**2).sum(1)[None, :]).argmin(1)
        for cluster in range(k):
            members = labels == cluster
            if members.any():
                centres[cluster] = points[members].mean(0)
    return (squared[:, None] - 2 * points @ centres.T + (centres**2).sum(1)[None, :]).argmin(1), centres


def choose_diverse(vectors: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` positions that cover the vectors: k-means clusters, each giving its most central text and then its
    share (by size, largest remainder) of the rest; in order."""
    pool = len(vectors)
    if count >= pool:
        return np.arange(pool, dtype=np.int64)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    k = min(count, MAX_CLUSTERS)
    labels, centres = kmeans(vectors, k, seed)
    sizes = np.bincount(labels, minlength=k)
    quota = (sizes > 0).astype(np.int64)  # every cluster first gives its most central text
    spare = sizes - quota
    exact = spare * (count - int(quota.sum())) / max(int(spare.sum()), 1)
    extra = np.floor(exact).astype(np.int64)
    for cluster in np.argsort(-(exact - extra), kind="stable")[: count - int(quota.sum()) - int(extra.sum())]:
        extra[cluster] += 1
    quota += extra
    chosen = []
    for cluster in range(k):
        members = np.flatnonzero(labels == cluster)
        nearest = members[np.argsort(((vectors[members] - centres[cluster]) ** 2).sum(1), kind="stable")]
        chosen.extend(nearest[: quota[cluster]].tolist())
    if len(chosen) < count:  # a cluster smaller than its quota: fill from the rest, seeded
        rest = np.setdiff1d(np.arange(pool), chosen)
        chosen.extend(np.random.default_rng(seed).choice(rest, size=count - len(chosen), replace=False).tolist())
    return np.sort(np.asarray(chosen, dtype=np.int64))


def first_round_count(count: int, train: int, chunk_size: int) -> int:
    """How many texts `uncertain`'s first round labels: about half of `count`, so that the transfer cache's rows
    (the `train` labeled texts first) end on a chunk boundary; all of `count` when no boundary falls inside it."""
    boundaries = [b for b in range(chunk_size, train + count + 1, chunk_size) if train < b < train + count]
    return min(boundaries, key=lambda b: (abs(b - train - count / 2), b)) - train if boundaries else count


def least_sure(vectors: np.ndarray, first: np.ndarray, probabilities: np.ndarray, count: int, seed: int, steps: int = 300) -> np.ndarray:
    """The `count` positions outside `first` that a linear softmax student over `vectors`, fitted to the labeler's
    `probabilities` on `first`, is least sure of (smallest top-two margin); in order."""
    rest = np.setdiff1d(np.arange(len(vectors)), first)
    if count >= len(rest) or count == 0 or len(first) == 0:
        return rest if count >= len(rest) else np.sort(np.random.default_rng(seed).choice(rest, size=count, replace=False))
    mean, scale = vectors[first].mean(0), vectors[first].std(0) + 1e-6
    torch.manual_seed(seed)
    inputs = torch.from_numpy((vectors[first] - mean) / scale).float()
    targets = torch.from_numpy(probabilities).float()
    student = torch.nn.Linear(inputs.shape[1], targets.shape[1])
    optimizer = torch.optim.Adam(student.parameters(), lr=0.05, weight_decay=1e-4)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = -(targets * torch.log_softmax(student(inputs), -1)).sum(1).mean()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        top = torch.softmax(student(torch.from_numpy((vectors[rest] - mean) / scale).float()), -1).topk(2, dim=1).values.numpy()
    margin = top[:, 0] - top[:, 1]
    return np.sort(rest[np.argsort(margin, kind="stable")[:count]])


def finished_first_round(folder, fingerprint: str, rows: int) -> TransferCache | None:
    """The final cache when it already holds the first round's rows (a re-run of a finished or resumed run): read from it,
    so neither the labeler nor the manifest is touched again. None when the first round still has chunks to label."""
    cache = TransferCache(folder)
    if not (cache.folder / MANIFEST).is_file():
        return None
    manifest = cache.manifest
    if manifest.get("fingerprint") != fingerprint or manifest["n"] < rows:
        return None
    chunks = -(-rows // manifest["chunk_size"])
    return cache if all(cache.read_chunk(i) is not None for i in range(chunks)) else None


def label_first_round(labeler, stream, folder, spec, engine=None) -> None:
    """`uncertain`'s first round: label the train texts and the first share into the transfer cache's first chunks
    (`folder`, under the final cache's fingerprint), then choose the second round from what the labeler said."""
    if stream.budget is None or stream.budget_strategy != "uncertain" or stream.second is not None:
        return
    first, train = stream.first_round, len(stream.corpus.train)
    count = budget_count(stream.budget, stream.pool_size)
    texts = itertools.chain(stream.corpus.train.texts, stream.unlabeled(stream.at(first)))
    fingerprint = part_fingerprint(labeler, spec, stream.count_and_fingerprint[1])
    rows = train + len(first)
    cache = finished_first_round(folder, fingerprint, rows)
    if cache is None:
        cache = annotate(labeler, texts, rows, folder, spec, fingerprint, "teacher labels transfer (first round)", engine=engine)
    logits = cache.load(rows).logits[train:]
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    stream.second = least_sure(stream.vectors, first, probabilities / probabilities.sum(1, keepdims=True), count - len(first), stream.seed)
