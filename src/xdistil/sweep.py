"""`xdistil sweep`: one teacher and one transfer set, several students, and the one that fits a budget.

The run folder's teacher and caches are made (or found) once; each student is its own run folder under `RUN/sweep/`
that links them, so it is a cached, resumable step like any run, and a second sweep retrains nothing. Every student
is then measured here on the same test texts from raw text - quality, latency at each batch size, size on disk - as
its PyTorch folder and as an ONNX int8 export. `RUN/sweep/frontier.json` holds every row and the frontier (no other
row both better and faster); with a budget, the best row within it is named and copied to `RUN/best/`.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from xdistil.atomic import atomic_write_json, atomic_write_text
from xdistil.config import RunConfig, build_config, config_to_dict, with_family
from xdistil.errors import XDistilError
from xdistil.evaluation.latency import measure_latency
from xdistil.folderlock import mark_run_folder
from xdistil.pipeline import Run
from xdistil.progress import enter_step, log

DEFAULT_STUDENTS = ("bilstm", "transformer:layers=3")
FORMATS = ("pytorch", "onnx-int8")


@dataclass(frozen=True)
class StudentSpec:
    """One student of a sweep: `arch[:key=value,...]`, e.g. `bilstm:hidden=128` or `transformer:layers=3`."""

    arch: str
    settings: dict

    @classmethod
    def parse(cls, text: str) -> StudentSpec:
        arch, _, rest = text.strip().partition(":")
        settings = {}
        for part in filter(None, rest.split(",")):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise XDistilError(f"--student '{text}': expected arch[:key=value,...], e.g. transformer:layers=3")
            settings[key.strip()] = yaml.safe_load(value)
        return cls(arch, settings)

    @property
    def name(self) -> str:
        return "-".join([self.arch, *(f"{k}{v}" for k, v in sorted(self.settings.items()))]).replace("/", "_")

    def values(self, base: dict) -> dict:
        """The run values of this student: the base config's own student settings when it is the same family, the
        family's defaults (student settings and schedule) when it is another one."""
        if self.arch == base["student"].get("arch", "bilstm"):
            return {**base, "student": {**base["student"], **self.settings}}
        return with_family(base, self.arch, **self.settings)


@dataclass
class Row:
    """One student in one format, measured in this process on the run's test texts."""

    student: str
    format: str
    quality: float  # the task's primary metric on test
    size_mb: float
    latency_ms: dict[str, float]  # median per batch, from raw text, by "batch_N"
    folder: str


def link_shared(base: Path, out: Path, names: tuple[str, ...] = ("teacher", "cache")) -> None:
    """Make `out` a run folder whose `names` are symlinks to the base run folder's (finished parts it reuses)."""
    mark_run_folder(out)
    for name in names:
        link = out / name
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to((base / name).resolve(), target_is_directory=True)


def _size_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".safetensors", ".onnx")) / 1e6, 3)


def measure(predictor, name: str, fmt: str, folder: Path, items: list, score, batch_sizes: list[int], repeats: int) -> Row:
    """Quality from raw text (`score(probabilities)`), then the median latency of `predict_proba` on the same texts."""
    quality = score(predictor.predict_proba(items))
    latency = {}
    for size in batch_sizes:
        batches = [[items[(b * size + i) % len(items)] for i in range(size)] for b in range(repeats)]
        latency[f"batch_{size}"] = measure_latency(predictor.predict_proba, batches, size)["median_ms"]
    return Row(name, fmt, quality, _size_mb(folder), latency, str(folder))


def frontier(rows: list[Row], batch: str) -> list[Row]:
    """The rows no other row beats on both quality and latency at `batch`."""
    return [r for r in rows if not any(o.quality >= r.quality and o.latency_ms[batch] <= r.latency_ms[batch]
                                       and (o.quality > r.quality or o.latency_ms[batch] < r.latency_ms[batch]) for o in rows)]


def choose(rows: list[Row], batch: str, max_latency_ms: float | None, max_size_mb: float | None) -> Row | None:
    """The best row within the budget (the faster one on a tie), or None when none fits."""
    fits = [r for r in rows if (max_latency_ms is None or r.latency_ms[batch] <= max_latency_ms)
            and (max_size_mb is None or r.size_mb <= max_size_mb)]
    return max(fits, key=lambda r: (r.quality, -r.latency_ms[batch])) if fits else None


def run_sweep(config: RunConfig, specs: list[StudentSpec], batch: int = 32, max_latency_ms: float | None = None,
              max_size_mb: float | None = None) -> dict:
    """Train and measure every student of `specs` against the config's teacher and transfer set; see the module doc."""
    from xdistil.export.onnx import export_onnx
    from xdistil.export.runtime import ONNX_CONFIG, OnnxStudent
    from xdistil.student.io import load_student

    if not specs:
        raise XDistilError("sweep: no students given")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise XDistilError(f"sweep: the same student twice ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
    base_run = Run(config)
    folder, task = base_run.folder, base_run.task
    base = base_run.execute(until="annotate")  # the teacher and the caches every student reuses
    values = config_to_dict(base_run.config)
    corpus = base.data.corpus
    sizes = sorted(set(config.evaluation.latency_batch_sizes) | {batch})
    items = list(corpus.test.texts)  # texts, or word lists for a per-word task: what the predictors take

    def score(probabilities) -> float:
        predicted = np.concatenate([p.argmax(-1) for p in probabilities]) if task.per_word else np.asarray(probabilities).argmax(1)
        return float(task.metrics(predicted, corpus.test, corpus.label_names)[task.primary_metric])

    rows: list[Row] = []
    for spec in specs:
        out = folder.sweep / spec.name
        link_shared(folder.root, out)
        enter_step(f"sweep: {spec.name}")
        Run(build_config({**spec.values(values), "out": str(out)}, f"sweep student {spec.name}")).run()
        student = out / "student"
        rows.append(measure(load_student(student), spec.name, "pytorch", student, items, score, sizes, config.evaluation.latency_repeats))
        onnx, made_from = out / "onnx-int8", out / "onnx-int8.source"  # the student manifest the export was made from
        source = hashlib.sha256((student / "manifest.json").read_bytes()).hexdigest()
        if not (onnx / ONNX_CONFIG).is_file() or not made_from.is_file() or made_from.read_text() != source:
            export_onnx(student, onnx, int8=True)
            atomic_write_text(made_from, source)
        rows.append(measure(OnnxStudent(onnx), spec.name, "onnx-int8", onnx, items, score, sizes, config.evaluation.latency_repeats))
        log(f"sweep: {spec.name}: {task.primary_metric} {rows[-2].quality:.4f} (pytorch), {rows[-1].quality:.4f} (onnx int8)")
    key = f"batch_{batch}"
    best = choose(rows, key, max_latency_ms, max_size_mb)
    result = {
        "primary_metric": task.primary_metric, "batch": batch, "test_items": len(items),
        "budget": {"max_latency_ms": max_latency_ms, "max_size_mb": max_size_mb},
        "rows": [asdict(r) for r in rows], "frontier": [f"{r.student} ({r.format})" for r in frontier(rows, key)],
        "chosen": asdict(best) if best else None,
    }
    atomic_write_json(folder.sweep / "frontier.json", result)
    atomic_write_text(folder.sweep / "report.md", sweep_table(result))
    _plot(rows, key, task.primary_metric, folder.sweep / "frontier.png")
    if best is not None and (max_latency_ms is not None or max_size_mb is not None):
        _copy_best(Path(best.folder), folder.best)
        log(f"sweep: chose {best.student} ({best.format}); copied to {folder.best}")
    elif max_latency_ms is not None or max_size_mb is not None:
        log("sweep: no student fits the budget")
    return result


def _copy_best(source: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def sweep_table(result: dict) -> str:
    sizes = sorted(result["rows"][0]["latency_ms"], key=lambda k: int(k.split("_")[1])) if result["rows"] else []
    lines = [f"# Sweep: {len(result['rows']) // len(FORMATS)} students on {result['test_items']:,} test texts", "",
             f"| student | format | {result['primary_metric']} | size (MB) | " + " | ".join(f"{s.replace('_', ' ')} (ms)" for s in sizes) + " |",
             "|---|---|---:|---:|" + "---:|" * len(sizes)]
    for r in result["rows"]:
        lines.append(f"| {r['student']} | {r['format']} | {100 * r['quality']:.1f} | {r['size_mb']:.2f} | "
                     + " | ".join(f"{r['latency_ms'][s]:.2f}" for s in sizes) + " |")
    lines += ["", f"Frontier at batch {result['batch']}: {', '.join(result['frontier'])}."]
    chosen = result["chosen"]
    budget = {k: v for k, v in result["budget"].items() if v is not None}
    if budget:
        lines.append(f"Budget {budget}: " + (f"**{chosen['student']} ({chosen['format']})**, copied to best/." if chosen else "no student fits."))
    return "\n".join(lines) + "\n"


def _plot(rows: list[Row], key: str, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for fmt, marker in zip(FORMATS, "os"):
        mine = [r for r in rows if r.format == fmt]
        ax.scatter([r.latency_ms[key] for r in mine], [100 * r.quality for r in mine], marker=marker, label=fmt)
        for r in mine:
            ax.annotate(r.student, (r.latency_ms[key], 100 * r.quality), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(f"CPU latency at {key.replace('_', ' ')} (median ms, log scale)")
    ax.set_ylabel(f"test {metric} (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
