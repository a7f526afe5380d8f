"""The run report: a teacher-vs-student table and one learning-curve plot per stage."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from xdistil.loop import StageHistory  # noqa: E402
from xdistil.atomic import atomic_write, atomic_write_text  # noqa: E402
from xdistil.tasks.description import describe  # noqa: E402


def plot_stages(histories: list[StageHistory], path: Path, title: str) -> None:
    """Train loss, dev loss and dev accuracy per epoch, one panel per stage; the kept epoch is marked."""
    columns = min(4, len(histories))
    rows = (len(histories) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for ax, history in zip(axes.flat, histories):
        epochs = [e.epoch for e in history.epochs]
        ax.plot(epochs, [e.train_loss for e in history.epochs], "o-", label="train loss")
        ax.plot(epochs, [e.dev_loss for e in history.epochs], "s-", label="dev loss")
        ax.axvline(history.best_epoch, color="grey", linestyle=":", label="kept epoch")
        ax.set_title(history.name, fontsize=9)
        ax.set_xlabel("epoch")
        accuracy = [e.dev_score for e in history.epochs]
        if all(a is not None for a in accuracy):
            twin = ax.twinx()
            twin.plot(epochs, accuracy, "^--", color="tab:green", label=f"dev {history.score_name}")
            twin.set_ylabel(f"dev {history.score_name}", fontsize=8)
        ax.legend(fontsize=7, loc="upper right")
    for ax in list(axes.flat)[len(histories) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def _fmt(value: float | int | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "ms":
        return f"{value:.2f}"
    return f"{value:.2f}"


def _quality_rows(metrics: dict) -> tuple[tuple[str, str, str], ...]:
    """(label, format, key) of the quality figures for the run's task."""
    return describe(metrics.get("task", "classification")).quality_rows


def comparison_table(metrics: dict) -> str:
    """Markdown table: teacher, distilled student and the no-distillation baseline side by side."""
    teacher, student = metrics["teacher"], metrics["student"]
    baseline = metrics.get("baseline_no_distillation") or {}
    rows = [(label, kind, teacher.get(key), student.get(key), baseline.get(key)) for label, kind, key in _quality_rows(metrics)]
    rows = [row for row in rows if row[2:] != (None, None, None)]
    rows += [
        ("parameters", "int", teacher["params"], student["params"], baseline.get("params")),
        ("parameters without embeddings", "int", teacher["params_without_embeddings"], student["params_without_embeddings"], None),
        ("size on disk (MB)", "x", teacher["size_mb"], student["size_mb"], None),
    ]
    for size in sorted(teacher["latency_ms"]):
        rows.append((f"CPU latency, {size.replace('_', ' ')} (median ms)", "ms", teacher["latency_ms"][size], student["latency_ms"][size], None))
    lines = ["| | teacher | student | student without distillation |", "|---|---:|---:|---:|"]
    for label, kind, t, s, b in rows:
        lines.append(f"| {label} | {_fmt(t, kind)} | {_fmt(s, kind)} | {_fmt(b, kind)} |")
    return "\n".join(lines)


def breakdown_tables(metrics: dict) -> list[str]:
    """Tagging: F1 per entity type and per language, teacher against student."""
    teacher, student = metrics["teacher"], metrics["student"]
    lines: list[str] = []
    for title, key, name in (("entity type", "per_type", "type"), ("language", "per_language_f1", "language")):
        if key not in teacher:
            continue
        lines += [f"### F1 per {title} (test)", "", f"| {name} | teacher F1 (%) | student F1 (%) | retention (%) |", "|---|---:|---:|---:|"]
        for item in sorted(teacher[key]):
            t, s = teacher[key][item], student[key].get(item)
            t, s = (t["f1"], s["f1"] if s else None) if isinstance(t, dict) else (t, s)
            retention = f"{100 * s / t:.1f}" if s is not None and t else "-"
            lines.append(f"| {item} | {_fmt(t, 'pct')} | {_fmt(s, 'pct')} | {retention} |")
        lines.append("")
    return lines


def speedup_line(metrics: dict) -> str:
    """The CPU speed-up over the teacher at every batch size measured, or that latency was not measured."""
    sizes = sorted(int(key.removeprefix("speedup_batch_")) for key in metrics if key.startswith("speedup_batch_"))
    if not sizes:
        return "- latency was not measured (evaluation.latency_batch_sizes is empty)"
    ratios = ", ".join(f"**{metrics[f'speedup_batch_{size}']:.1f}x** at batch {size}" for size in sizes)
    return f"- CPU speed-up over the teacher ({metrics['run']['threads']} threads, same process, same test texts): {ratios}"


def quick_lines(metrics: dict) -> list[str]:
    """A warning, for a `--quick` run, that its figures come from a few epochs and are not a full run's."""
    if not metrics["run"].get("quick"):
        return []
    return ["**This is a quick run** (`--quick`: a few epochs for the teacher and each stage, a short baseline) for a first "
            "look; its figures are below what a full run of the same data reaches. Re-run without `--quick` for those.", ""]


def ensemble_lines(metrics: dict) -> list[str]:
    """An ensemble's teachers, each alone on test, and the student's loyalty to each (the teacher column above is their combination)."""
    members = metrics["teacher"].get("members")
    if not members:
        return []
    primary = metrics.get("primary_metric", "accuracy")
    lines = ["### The ensemble's teachers (test)", "", "The teacher column above is their combination; each alone:", "",
             f"| teacher | seed | weight | {primary} (%) | student's label loyalty (%) | probability loyalty (%) |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| `{m['model']}` | {m['seed']} | {m['weight']:g} | {_fmt(m.get(primary), 'pct')} | {_fmt(m['student_loyalty'], 'pct')} | "
              f"{_fmt(m['student_probability_loyalty'], 'pct')} |" for m in members]
    return lines + [""]


def transfer_lines(data: dict) -> list[str]:
    """The report's sentence on where the transfer texts came from and how many were labeled, when not simply all real."""
    generated, labeled = data.get("transfer_generated", 0), data.get("transfer_labeled")
    if not generated and labeled is None:
        return []
    pool = data["transfer"] + generated
    text = f"The transfer set: {data['transfer']:,} real texts" + (f" and {generated:,} generated by augmentation" if generated else "")
    text += f"; a labeling budget labeled {labeled:,} of the {pool:,}." if labeled is not None else " (all labeled by the teacher)."
    return [text, ""]


def write_report(folder: Path, metrics: dict, histories: dict[str, list[StageHistory]], notes: list[str]) -> Path:
    """report.md with the table, headline ratios, data notes and a learning-curve figure per model."""
    primary = metrics.get("primary_metric", "accuracy")
    labels = metrics["run"].get("labels")
    who = (f"Labels from {labels} (the teacher column: those labels' quality; its size and speed are the reference encoder "
           f"`{metrics['run']['teacher']}`'s)" if labels else f"Teacher `{metrics['run']['teacher']}`")
    sections = [
        f"# xdistil run report: {metrics['run']['name']}",
        "",
        f"{who} distilled into a {metrics['run']['student_arch']} student. "
        f"Models were selected on the dev split only; every figure below is on the test split "
        f"({metrics['data']['test']:,} {describe(metrics.get('task', 'classification')).example_unit}).",
        "",
        *quick_lines(metrics),
        comparison_table(metrics),
        "",
        f"- compression (teacher parameters / student parameters): **{metrics['compression']:.1f}x**",
        speedup_line(metrics),
        f"- student / teacher {primary}: **{100 * metrics['retention']:.1f}%**; "
        f"student minus teacher: **{100 * (metrics['student'][primary] - metrics['teacher'][primary]):+.1f} points**"
        + (
            f"; student minus no-distillation baseline: **{100 * (metrics['student'][primary] - metrics['baseline_no_distillation'][primary]):+.1f} points**"
            if metrics.get("baseline_no_distillation")
            else ""
        ),
        "",
        *breakdown_tables(metrics),
        *ensemble_lines(metrics),
        "## Data",
        "",
        ", ".join(f"{k}: {v:,}" for k, v in metrics["data"].items()),
        "",
        *transfer_lines(metrics["data"]),
        *[f"- {note}" for note in notes],
        "",
        "## Learning curves",
        "",
    ]
    for name, stage_histories in histories.items():
        if not stage_histories:
            continue
        image = f"curves_{name}.png"
        plot_stages(stage_histories, folder / image, name)
        sections += [f"### {name}", "", f"![{name}]({image})", ""]
        sections += [f"| stage | epochs run | kept epoch | dev loss | dev {stage_histories[0].score_name} |", "|---|---:|---:|---:|---:|"]
        for h in stage_histories:
            best = h.epochs[h.best_epoch - 1]
            acc = f"{100 * best.dev_score:.1f}" if best.dev_score is not None else "-"
            sections.append(f"| {h.name} | {len(h.epochs)} | {h.best_epoch} | {best.dev_loss:.4f} | {acc} |")
        sections.append("")
    path = folder / "report.md"
    atomic_write_text(path, "\n".join(sections))
    return path
