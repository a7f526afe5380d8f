"""What the benchmarks share: quiet libraries, run folders that reuse a base folder's teacher and cache,
a row runner, one-thread worker processes, latency timed by the product's own evaluation, and the
results files. Imports of xdistil stay inside functions so `--help` is instant."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def transformer_student(values: dict, layers: int, soft_epochs: int, seed: int = 1, limit: int | None = None) -> dict:
    """A run's values with the transformer student (all-MiniLM-L6-v2 cut to `layers`): the family's own schedule with
    `soft_epochs` epochs on the transfer set, the student seed and the first `limit` transfer texts."""
    from xdistil.config import with_family
    from xdistil.student.transformer import TRANSFORMER_SCHEDULE

    out = with_family(json.loads(json.dumps(values)), "transformer", encoder="minilm-l6", layers=layers)
    stages = [dict(stage, epochs=soft_epochs) if stage["data"] == "transfer" else dict(stage) for stage in TRANSFORMER_SCHEDULE]
    out["distill"].update(stages=stages, seed=seed, transfer_limit=limit)
    return out


def quiet_transformers() -> None:
    """No per-model warnings or download bars in a benchmark's output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def link_shared(base: Path, out: Path, names: Sequence[str]) -> None:
    """Symlink the base folder's finished parts (teacher, caches) into another run folder (marked as one first):
    what `xdistil sweep` does for each of its students."""
    from xdistil.sweep import link_shared as link

    link(base, out, tuple(names))


def run_row(values: dict, base: Path, out: Path, until: str = "evaluate"):
    """Run one row in its own folder, reusing the base folder's teacher and annotation; returns
    (metrics, the run's `RunOutputs`)."""
    from xdistil.config import build_config
    from xdistil.pipeline import Run

    link_shared(base, out, ("teacher", "cache"))
    made = Run(build_config({**values, "out": str(out)}, str(out))).execute(until)
    return made.metrics, made


@dataclass(frozen=True)
class Job:
    """One unit of worker work that leaves a finished run folder: `annotate` (up to the annotation),
    `run` (a whole run in its own folder) or `row` (a student row reusing `base`'s teacher and cache)."""

    kind: str
    values: dict
    out: str
    base: str = ""


def do_job(job: Job) -> str:
    """Run one job in this process; returns its folder."""
    from xdistil.config import build_config
    from xdistil.pipeline import Run

    if job.kind == "row":
        run_row(job.values, Path(job.base), Path(job.out))
    else:
        Run(build_config({**job.values, "out": job.out}, job.out)).run(until="annotate" if job.kind == "annotate" else "evaluate")
    return job.out


def _one_thread() -> None:
    """Worker set-up: one torch thread, quiet transformers."""
    import torch

    quiet_transformers()
    torch.set_num_threads(1)


def one_thread(job: Job) -> Job:
    """The job with `threads: 1` in its config: a run sets its own thread count (its CPU budget, 2 here) whatever the
    worker set, and two workers of two threads each would oversubscribe the cores (benchmarks/threads.py: 3.5x-17x)."""
    return Job(job.kind, {**job.values, "threads": 1}, job.out, job.base)


def run_jobs(first: list[Job], then: list[Job], workers: int) -> None:
    """Run the jobs in `workers` processes of one thread each (the students are too small for two
    threads to pay), `then` once `first[0]` has finished. Every job leaves a finished run folder, so
    the sequential pass that follows only loads them. Fewer than 2 workers: nothing here, all later."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from xdistil.progress import log

    if workers < 2 or not first:
        return
    log(f"benchmark: {len(first) + len(then)} jobs in {workers} one-thread worker processes")
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread) as pool:
        futures = [pool.submit(do_job, one_thread(job)) for job in first]
        futures[0].result()
        futures += [pool.submit(do_job, one_thread(job)) for job in then]
        for future in futures:
            log(f"benchmark: finished {future.result()}")


def median_ms(forward: Callable, batches: list, size: int) -> float:
    """Median milliseconds per batch of `forward`, timed as a run's evaluation times it (`evaluation.latency`)."""
    from xdistil.evaluation.latency import measure_latency

    return measure_latency(forward, batches, size)["median_ms"]


def epoch_seconds(metrics: dict, part: str) -> float:
    """Seconds spent in the training epochs of a run's teacher, student or baseline (stage histories
    survive a resumed run, unlike its wall-clock timings)."""
    return sum(e["seconds"] for stage in metrics["stages"].get(part, []) for e in stage["epochs"])


def best_dev(stage: dict) -> float:
    """The dev score of a stage's kept epoch (its best), from metrics.json's stage histories."""
    return stage["epochs"][stage["best_epoch"] - 1]["dev_score"]


def final_dev(metrics: dict) -> float:
    """The dev score of the student a run kept: its last stage's best epoch."""
    return best_dev(metrics["stages"]["student"][-1])


def write_json(path: Path, result: dict, indent: int = 2) -> Path:
    """Save a benchmark's figures (the folder made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent), encoding="utf-8")
    return path


def write_results(stem: str, result: dict, table: str) -> None:
    """A benchmark's figures as `results/<stem>.json`, its table as `.md`, and the table on stdout."""
    write_json(RESULTS / f"{stem}.json", result)
    (RESULTS / f"{stem}.md").write_text(table, encoding="utf-8")
    print(table)


def write_label_file(path: Path, made) -> None:
    """A finished run's teacher logits over every text it labeled (train, transfer, dev, test) as a JSONL label file
    for `teacher.source: file` (a text's first row where it occurs twice); kept when it is there."""
    if path.is_file():
        return
    rows: dict[str, list[float]] = {}
    for name, (texts, _, _) in made.transfer.parts().items():
        for text, logits in zip(texts, made.annotation.caches[name].load().logits):
            rows.setdefault(text, logits.tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    with partial.open("w", encoding="utf-8") as handle:
        for text, logits in rows.items():
            handle.write(json.dumps({"text": text, "logits": logits}) + "\n")
    partial.replace(path)
