"""The student's model card: `student/README.md`, written from the finished run's metrics, so the
folder says what the student is, what it learned from, how good and fast it is, and how to load it."""

from __future__ import annotations

from pathlib import Path

from xdistil.evaluation.report import comparison_table, quick_lines, speedup_line
from xdistil.atomic import atomic_write_text
from xdistil.tasks.description import describe


def card_text(metrics: dict, config: dict, labels: list[str], notes: list[str]) -> str:
    """Markdown of the card (YAML front matter for the hub, then the sections)."""
    run, student, teacher = metrics["run"], metrics["student"], metrics["teacher"]
    task = describe(metrics.get("task", "classification"))
    primary = metrics.get("primary_metric", task.primary_metric)
    silver = any("silver" in note.lower() for note in notes)
    family = config["student"]
    sizes = ", ".join(f"{k} {v}" for k, v in family.items() if k != "arch")
    loyalty = [f"- label loyalty (test {task.loyalty_unit} where the student's label equals the teacher's): "
               f"**{100 * student['loyalty']:.1f}%**"]
    if student.get("probability_loyalty") is not None:
        loyalty.append(f"- probability loyalty (1 - Jensen-Shannon divergence between the student's and the teacher's "
                       f"output distributions, mean over test): **{100 * student['probability_loyalty']:.1f}%**")
    usage = f"xdistil.load_student(\"path/to/student\").predict({task.usage})"
    return "\n".join([
        "---",
        "library_name: xdistil",  # no pipeline_tag: this folder loads with xdistil (or its ONNX export), not in transformers
        f"tags: [xdistil, knowledge-distillation, {task.hub_tag}]",
        "---",
        "",
        f"# {run['name']}: a distilled {run['student_arch']} student",
        "",
        f"A {run['student_arch']} {task.noun} distilled by xdistil from "
        + (f"the labels of {run['labels']} (reference encoder `{run['teacher']}`, {teacher['params']:,} parameters)" if run.get("labels")
           else f"the teacher `{run['teacher']}` ({teacher['params']:,} parameters)")
        + " with unlabeled transfer text.",
        "",
        "## What it is",
        "",
        f"- family `{run['student_arch']}` ({sizes}); {student['params']:,} parameters, "
        f"{student['params_without_embeddings']:,} without the embeddings; **{metrics['compression']:.1f}x** fewer than the teacher",
        f"- vocabulary: {student.get('vocab_size', 'the teacher')} word pieces of its tokenizer (pruned to those in its training text)",
        f"- labels ({len(labels)}): {', '.join(labels)}",
        "",
        "## What it learned from",
        "",
        f"- labeled: {metrics['data']['train']:,} train, {metrics['data']['dev']:,} dev (model selection), "
        f"{metrics['data']['test']:,} test (the figures below); unlabeled transfer set: {metrics['data']['transfer']:,} texts "
        + (f"and {metrics['data']['transfer_generated']:,} generated from them by augmentation, " if metrics["data"].get("transfer_generated")
           else "")
        + (f"of which a labeling budget chose {metrics['data']['transfer_labeled']:,} for the teacher to label"
           if "transfer_labeled" in metrics["data"] else "labeled by the teacher"),
        *[f"- {note}" for note in notes],
        "",
        "## How good and how fast (test split)",
        "",
        *quick_lines(metrics),
        comparison_table(metrics),
        "",
        *loyalty,
        speedup_line(metrics),
        "",
        "## Intended use and limits",
        "",
        f"- {task.intended_use} like its training data: the same "
        "language(s), domain and label set. It has only seen the data above; expect lower quality elsewhere.",
        "- Its quality is bounded by the teacher's: it learned the teacher's outputs on unlabeled text"
        + (", and its gold labels are silver (made by another tagger), so the figures measure agreement with that tagger."
           if silver else "."),
        f"- Texts longer than {config['teacher']['max_length']} word pieces are cut for classification; texts longer than "
        f"{config['data'].get('max_chars', 100000):,} characters are cut before tokenizing.",
        f"- Selected on the dev split by {primary}; test was used only for the figures above.",
        "",
        "## How to load it",
        "",
        "This folder is xdistil's own format: it loads with xdistil, not with `transformers` (`AutoModel` and `pipeline` "
        "do not know the student's architecture). To serve it without torch, export it to ONNX as below."
        + _transformers_line(config, task),
        "",
        "```python",
        "import xdistil",
        usage,
        "xdistil.student.io.DistilledStudent.from_pretrained(\"path/or/hub-repo\")   # hub conventions",
        "```",
        "",
        "Without torch, after `xdistil export path/to/student --out exported [--int8]`:",
        "",
        "```python",
        "from xdistil.export.runtime import OnnxStudent   # onnxruntime + tokenizers + numpy",
        "OnnxStudent(\"exported\").predict([\"a text to label\"])",
        "```",
        "",
        "`manifest.json` holds the SHA-256 of every file of this folder; loading refuses a missing or altered file.",
        "",
    ])


def write_card(folder: Path, metrics: dict, config: dict, labels: list[str], notes: list[str]) -> Path:
    """Write `folder/README.md` (the student folder's card)."""
    path = folder / "README.md"
    atomic_write_text(path, card_text(metrics, config, labels, notes))
    return path


def _transformers_line(config: dict, task) -> str:
    """How a transformer student becomes a plain transformers folder (its deployment beside ONNX), or nothing."""
    student = config.get("student", {})
    if student.get("arch") != "transformer":
        return ""
    if task.per_word or student.get("pooling") == "pooler":
        return (" As a transformer student with a stock head, it also exports to a folder `transformers.pipeline` loads: "
                "`xdistil export RUN --format transformers`.")
    return (" (A transformer student trained with `student.pooling: pooler` also exports to a folder `transformers.pipeline` "
            "loads; this one pools with its own head, so it does not.)")

