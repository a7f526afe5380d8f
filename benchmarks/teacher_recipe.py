"""SetFit's recipe against plain fine-tuning for the teacher, at 300 and 1,000 labels, as a teacher and through the
BiLSTM students distilled from each.

On the classification benchmark's split (the demo's texts; the labels beyond `data.train_size` join the transfer set
unlabeled), all-MiniLM-L6-v2 - the quick classification benchmark's teacher - is made a teacher four ways, each
fine-tune 3 epochs at 1,000 labels and 10 at 300 (as the classification benchmark's small-labeled row):
- `finetune`: the encoder and the transformers class's own head (BERT's reads the first token, through its pooler);
- `finetune, head_lr 1e-3`: the same with a 20x larger step for the new head (is the first-token head only slow?);
- `finetune, pooled head`: the same with `teacher.head: pooled` (a linear head on the mean of the last layer);
- `setfit`: first `teacher.pairs` (5 pair passes over 300 labels, 2 over 1,000: 3,000 and 4,000 pairs; one epoch,
  lr 2e-5; SetFit's cosine loss on mean-pooled vectors), then the pooled head's fine-tune.
At 1,000 labels the plain teacher is the quick base run's own (linked, not retrained). For each label count dev
chooses the recipe (the teacher's dev accuracy). Students: the BiLSTM (default shape, teacher_pca), soft loss alone
for 3 epochs, seeds 1-3 (as benchmarks/ensemble.py), selected on dev; every figure reported is on test. Then the 3-layer transformer
student (all-MiniLM-L6-v2 cut to 3 layers; one soft epoch, then its gold stage; seed 1, with every core) from the
finetune and the setfit teachers.

    python benchmarks/teacher_recipe.py [--workers 2] [--no-transformer]

Writes benchmarks/results/teacher_recipe.json and .md.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.classification import MODES, base_of  # noqa: E402
from benchmarks.common import Job, best_dev, epoch_seconds, final_dev, link_shared, quiet_transformers, run_jobs, write_results  # noqa: E402
from benchmarks.ensemble import STUDENT_SEEDS, TRANSFORMER_HEADING, arguments, student_values, transformer_values  # noqa: E402

LABELS = [300, 1000]
# the teacher settings of each recipe; setfit's head is the pooled one (teacher.head: auto)
RECIPES = {"finetune": {}, "finetune, head_lr 1e-3": {"head_lr": 1e-3}, "finetune, pooled head": {"head": "pooled"},
           "setfit": {"recipe": "setfit"}}
PAIRS = {"epochs": 1, "lr": 2e-5, "batch_size": 16}
TRANSFORMED = ("finetune", "setfit")  # the recipes whose transformer student is trained too (one seed each)
ITERATIONS = {300: 5, 1000: 2}  # pair passes: 3,000 and 4,000 pairs (~4.5 and ~6 min on 2 cores)
WORK = HERE / "cache" / "teacher_recipe"


def point_values(values: dict, labels: int, recipe: str) -> dict:
    """The run values of one (labels, recipe) point: fewer labels train the teacher for proportionally more epochs."""
    out = json.loads(json.dumps(values))
    if labels != out["data"]["train_size"]:
        out["data"]["train_size"] = labels
        out["teacher"]["epochs"] = round(MODES["quick"]["teacher_epochs"] * 1000 / labels)
    out["teacher"].update(RECIPES[recipe])
    if out["teacher"].get("recipe") == "setfit":
        out["teacher"]["pairs"] = {**PAIRS, "iterations": ITERATIONS[labels]}
    return out


def student_row(values: dict, folder: Path) -> dict:
    """A finished (or, for the first seed, a new) run's figures."""
    from xdistil.config import build_config
    from xdistil.pipeline import Run

    metrics = Run(build_config({**values, "out": str(folder)}, str(folder))).run()
    return {"seed": values["distill"]["seed"], "dev_accuracy": final_dev(metrics), "test_accuracy": metrics["student"]["accuracy"],
            "training_seconds": epoch_seconds(metrics, "student"), "metrics": metrics}


def teacher_figures(metrics: dict) -> dict:
    """The teacher's dev accuracy (its fine-tune's best epoch), test figures, and what its stages took."""
    stages = metrics["stages"]["teacher"]
    pairs = [s for s in stages if s["name"] == "teacher contrastive pairs"]
    return {"dev_accuracy": best_dev(stages[-1]), "test_accuracy": metrics["teacher"]["accuracy"], "test_macro_f1": metrics["teacher"]["macro_f1"],
            "training_seconds": round(epoch_seconds(metrics, "teacher"), 1),
            **({"pairs_centroid_dev_accuracy": best_dev(pairs[0]), "pairs_seconds": round(sum(e["seconds"] for e in pairs[0]["epochs"]), 1)}
               if pairs else {})}


def measure(base: Path, values: dict, workers: int, transformers: bool) -> list[dict]:
    """Every point: its first seed fine-tunes and annotates in this process, the further seeds reuse that teacher and
    cache in `workers` one-thread workers; then, one at a time with every core, the transformer students."""
    points, jobs = [], []
    for labels in LABELS:
        for recipe in RECIPES:
            run_values = point_values(values, labels, recipe)
            folder = WORK / f"labels-{labels}-{recipe.replace(', ', '-').replace(' ', '_')}"
            if run_values == values:  # the base run's own teacher and transfer set
                link_shared(base, folder / "seed1", ("teacher", "cache"))
            first = student_row(student_values(run_values, STUDENT_SEEDS[0]), folder / "seed1")
            for seed in STUDENT_SEEDS[1:]:
                link_shared(folder / "seed1", folder / f"seed{seed}", ("teacher", "cache"))
                jobs.append(Job("run", student_values(run_values, seed), str(folder / f"seed{seed}")))
            points.append({"labels": labels, "recipe": recipe, "values": run_values, "folder": folder, "first": first})
    run_jobs(jobs, [], workers)
    rows = []
    for point in points:
        students = [point["first"]] + [student_row(student_values(point["values"], s), point["folder"] / f"seed{s}") for s in STUDENT_SEEDS[1:]]
        rows.append({"labels": point["labels"], "recipe": point["recipe"], "teacher": teacher_figures(point["first"]["metrics"]),
                     "students": [{k: r[k] for k in ("seed", "dev_accuracy", "test_accuracy", "training_seconds")} for r in students],
                     "student_test_mean": statistics.mean(r["test_accuracy"] for r in students),
                     "student_dev_mean": statistics.mean(r["dev_accuracy"] for r in students)})
        if transformers and point["recipe"] in TRANSFORMED:
            link_shared(point["folder"] / "seed1", point["folder"] / "transformer", ("teacher", "cache"))
            row = student_row(transformer_values(student_values(point["values"], 1)), point["folder"] / "transformer")
            rows[-1]["transformer"] = {k: row[k] for k in ("seed", "dev_accuracy", "test_accuracy", "training_seconds")}
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per label count: the recipe dev chooses, and setfit against finetune on test (points)."""
    out = []
    for labels in LABELS:
        by = {r["recipe"]: r for r in rows if r["labels"] == labels}
        chosen = max(RECIPES, key=lambda k: (by[k]["teacher"]["dev_accuracy"], k == "finetune"))  # a tie keeps the default
        against = {k: {"teacher": 100 * (by[k]["teacher"]["test_accuracy"] - by["finetune"]["teacher"]["test_accuracy"]),
                       "students": 100 * (by[k]["student_test_mean"] - by["finetune"]["student_test_mean"]),
                       **({"transformer": 100 * (by[k]["transformer"]["test_accuracy"] - by["finetune"]["transformer"]["test_accuracy"])}
                          if "transformer" in by[k] and "transformer" in by["finetune"] else {})}
                   for k in RECIPES if k != "finetune"}
        out.append({"labels": labels, "chosen_on_dev": chosen, "against_finetune": against})
    return out


def markdown(result: dict) -> str:
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = ["# The teacher's recipe: SetFit's pairs, then fine-tuning, against fine-tuning alone", "", f"`{result['command']}` - {result['setting']}", "",
             "| labels | recipe | teacher dev (%) | teacher test (%) | teacher training (s) | BiLSTM students, test per seed (%) | mean (%) |",
             "|---:|---|---:|---:|---:|---|---:|"]
    for r in result["rows"]:
        t = r["teacher"]
        lines.append(f"| {r['labels']:,} | {r['recipe']} | {pct(t['dev_accuracy'])} | {pct(t['test_accuracy'])} | {t['training_seconds']:.0f} | "
                     f"{', '.join(pct(s['test_accuracy']) for s in r['students'])} | {pct(r['student_test_mean'])} |")
    lines.append("")
    for s in result["summary"]:
        gains = "; ".join(f"{k}: teacher {g['teacher']:+.1f}, students {g['students']:+.1f}"
                          + (f", transformer student {g['transformer']:+.1f}" if "transformer" in g else "") for k, g in s["against_finetune"].items())
        lines.append(f"- {s['labels']:,} labels: dev chooses **{s['chosen_on_dev']}**. Against finetune on test (points): {gains}.")
    transformed = [r for r in result["rows"] if "transformer" in r]
    if transformed:
        lines += ["", TRANSFORMER_HEADING, "", "| labels | recipe | dev (%) | test (%) | training (s) |", "|---:|---|---:|---:|---:|"]
        lines += [f"| {r['labels']:,} | {r['recipe']} | {pct(r['transformer']['dev_accuracy'])} | {pct(r['transformer']['test_accuracy'])} | "
                  f"{r['transformer']['training_seconds']:.0f} |" for r in transformed]
    return "\n".join(lines + [""])


def main() -> None:
    args = arguments(__doc__)
    quiet_transformers()
    started = time.perf_counter()
    base, values = base_of("quick")
    rows = measure(base, values, args.workers, not args.no_transformer)
    result = {
        "command": "python benchmarks/teacher_recipe.py",
        "setting": f"all-MiniLM-L6-v2 on the classification benchmark's split at {' and '.join(f'{n:,}' for n in LABELS)} labels; setfit: "
                   f"teacher.pairs {PAIRS} with {ITERATIONS} pair passes per label count, then the same fine-tune with the pooled head; "
                   "BiLSTM students, soft loss alone, 3 epochs, seeds 1-3",
        "rows": rows, "summary": summary(rows),
        "not_run": "all-mpnet-base-v2 as the teacher; the transformer students' further seeds, and theirs for the other two recipes; "
                   "more pair passes (SetFit's own default is 20)",
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    write_results("teacher_recipe", result, markdown(result))


if __name__ == "__main__":
    main()
