"""The run report: a teacher-vs-student table and one learning-curve plot per stage."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from xdistil.loop import StageHistory  # noqa: E402


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
        accuracy = [e.dev_accuracy for e in history.epochs]
        if all(a is not None for a in accuracy):
            twin = ax.twinx()
            twin.plot(epochs, accuracy, "^--", color="tab:green", label="dev accuracy")
            twin.set_ylabel("dev accuracy", fontsize=8)
        ax.legend(fontsize=7, loc="upper right")
    for ax in list(axes.flat)[len(histories) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
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


def comparison_table(metrics: dict) -> str:
    """Markdown table: teacher, distilled student and the no-distillation baseline side by side."""
    teacher, student = metrics["teacher"], metrics["student"]
    baseline = metrics.get("baseline_no_distillation") or {}
    rows = [
        ("test accuracy (%)", "pct", teacher["accuracy"], student["accuracy"], baseline.get("accuracy")),
        ("test macro-F1 (%)", "pct", teacher["macro_f1"], student["macro_f1"], baseline.get("macro_f1")),
        ("label loyalty to teacher (%)", "pct", None, student["loyalty"], baseline.get("loyalty")),
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


def write_report(folder: Path, metrics: dict, histories: dict[str, list[StageHistory]], notes: list[str]) -> Path:
    """report.md with the table, headline ratios, data notes and a learning-curve figure per model."""
    sections = [
        f"# xdistil run report: {metrics['run']['name']}",
        "",
        f"Teacher `{metrics['run']['teacher']}` distilled into a {metrics['run']['student_arch']} student. "
        f"Models were selected on the dev split only; every figure below is on the test split "
        f"({metrics['data']['test']} examples).",
        "",
        comparison_table(metrics),
        "",
        f"- compression (teacher parameters / student parameters): **{metrics['compression']:.1f}x**",
        f"- speed-up at batch 32 on this CPU ({metrics['run']['threads']} threads): **{metrics['speedup_batch_32']:.1f}x**",
        f"- student minus teacher accuracy: **{100 * (metrics['student']['accuracy'] - metrics['teacher']['accuracy']):+.1f} points**; "
        f"student minus no-distillation baseline: **{100 * (metrics['student']['accuracy'] - metrics['baseline_no_distillation']['accuracy']):+.1f} points**"
        if metrics.get("baseline_no_distillation")
        else "",
        "",
        "## Data",
        "",
        ", ".join(f"{k}: {v:,}" for k, v in metrics["data"].items()),
        "",
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
        sections += ["| stage | epochs run | kept epoch | dev loss | dev accuracy |", "|---|---:|---:|---:|---:|"]
        for h in stage_histories:
            best = h.epochs[h.best_epoch - 1]
            acc = f"{100 * best.dev_accuracy:.1f}" if best.dev_accuracy is not None else "-"
            sections.append(f"| {h.name} | {len(h.epochs)} | {h.best_epoch} | {best.dev_loss:.4f} | {acc} |")
        sections.append("")
    path = folder / "report.md"
    path.write_text("\n".join(sections), encoding="utf-8")
    return path
