"""CPU latency of a model's forward pass on real batches, measured the same way for teacher and student."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch


@torch.inference_mode()
def measure_latency(forward: Callable[[object], object], batches: Sequence[object], batch_size: int, warmup: int = 2) -> dict[str, float]:
    """Median milliseconds per batch over `batches` (after `warmup` untimed calls) and examples per second."""
    for batch in list(batches)[:warmup]:
        forward(batch)
    times = []
    for batch in batches:
        started = time.perf_counter()
        forward(batch)
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {"median_ms": median * 1000.0, "examples_per_s": batch_size / median}
