"""An ensemble of three teachers against its best member, as a teacher and through the BiLSTM students distilled
from each.

On the classification benchmark's split (1,000 labels, the demo's texts), three fine-tunes of one encoder with three
seeds (`teacher.ensemble: [{seed: 43}, {seed: 44}]` beside teacher.model's own seed 42), combined by the mean of
their probabilities. The encoder is all-MiniLM-L6-v2, the quick classification benchmark's teacher: three fine-tunes and
three annotations of all-mpnet-base-v2 (~12 and ~7 min each on 2 cores) did not fit beside the other benchmarks. The
first member is the quick base run's own teacher (linked, not retrained). Each teacher's test figures come from the
ensemble run's metrics.json (`teacher.members`); the best member is the one with the best test accuracy (the harder
baseline for the ensemble). Students: the BiLSTM (default shape, teacher_pca), soft loss alone for 3 epochs, seeds 1-3,
from the ensemble's transfer set and from the best member's; selected on dev, figures on test. Then the 3-layer
transformer student (all-MiniLM-L6-v2 cut to 3 layers; one soft epoch over the transfer set, then its gold stage; seed
1, with every core) from each.

    python benchmarks/ensemble.py [--workers 2] [--no-transformer]

Writes benchmarks/results/ensemble.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.classification import base_of  # noqa: E402
from benchmarks.common import (  # noqa: E402
    Job, epoch_seconds, final_dev, link_shared, quiet_transformers, run_jobs, transformer_student, write_results,
)

TRANSFORMER = {"layers": 3, "soft_epochs": 1}
TRANSFORMER_HEADING = (f"## Transformer students ({TRANSFORMER['layers']} layers of all-MiniLM-L6-v2, one soft epoch then the gold stage; "
                       "test, seed 1)")
MEMBER_SEEDS = [43, 44]  # beside teacher.model's seed (the base run's, 42)
STUDENT_SEEDS = [1, 2, 3]
EPOCHS = 3
WORK = HERE / "cache" / "ensemble"


def student_values(values: dict, seed: int) -> dict:
    """The student run of `seed`: the first seed's runs fine-tune and annotate in this process with every core, the
    others are one of two one-thread workers."""
    out = json.loads(json.dumps(values))
    out["threads"] = None if seed == STUDENT_SEEDS[0] else 1
    out["distill"].update(stages=[{"name": "soft", "losses": {"soft": 1.0}, "epochs": EPOCHS}], seed=seed)
    return out


def ensemble_values(values: dict) -> dict:
    out = json.loads(json.dumps(values))
    out["teacher"].update(ensemble=[{"seed": s} for s in MEMBER_SEEDS], combine="probs")
    return out


def single_values(values: dict, seed: int) -> dict:
    """One member alone: the run seed is the member's, so its teacher fingerprint is the member's own."""
    return {**json.loads(json.dumps(values)), "seed": seed}


def student_row(values: dict, folder: Path) -> dict:
    """A finished (or, without workers, a new) run's figures; the folder's links are made beforehand."""
    from xdistil.config import build_config
    from xdistil.pipeline import Run

    metrics = Run(build_config({**values, "out": str(folder)}, str(folder))).run()
    return {"seed": values["distill"]["seed"], "dev_accuracy": final_dev(metrics),
            "test_accuracy": metrics["student"]["accuracy"], "teacher_accuracy": metrics["teacher"]["accuracy"],
            "members": metrics["teacher"].get("members"), "training_seconds": epoch_seconds(metrics, "student")}


def transformer_values(values: dict) -> dict:
    """The transformer student's run from a BiLSTM run's values: the family's own schedule with one soft epoch, seed 1."""
    out = transformer_student(values, TRANSFORMER["layers"], TRANSFORMER["soft_epochs"], limit=values["distill"].get("transfer_limit"))
    out["threads"] = None
    return out


def mean_of(rows: list[dict], key: str) -> float:
    return statistics.mean(r[key] for r in rows)


def markdown(result: dict) -> str:
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = ["# Three teachers against the best of them", "", f"`{result['command']}` - {result['setting']}", "",
             "## Teachers (test)", "", "| teacher | seed | accuracy (%) | macro F1 (%) | ensemble student's loyalty (%) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| member | {m['seed']} | {pct(m['accuracy'])} | {pct(m['macro_f1'])} | {pct(m['student_loyalty'])} |" for m in result["members"]]
    lines += [f"| **ensemble** (mean of probabilities) | - | {pct(result['ensemble_teacher_accuracy'])} | - | - |", "",
              "## BiLSTM students (soft loss, 3 epochs; test, mean of 3 seeds)", "", "| from | per seed (%) | mean (%) |", "|---|---|---:|"]
    for name in ("ensemble", "best member"):
        rows = result["students"][name]
        lines.append(f"| {name} | {', '.join(pct(r['test_accuracy']) for r in rows)} | {pct(mean_of(rows, 'test_accuracy'))} |")
    lines += ["", f"Ensemble against its best member (seed {result['best_member_seed']}): teacher {result['teacher_gain']:+.1f} points, "
                  f"BiLSTM student {result['student_gain']:+.1f} points."]
    if result.get("transformer_students"):
        t = result["transformer_students"]
        lines += ["", TRANSFORMER_HEADING, "", "| from | dev (%) | test (%) | training (s) |", "|---|---:|---:|---:|"]
        lines += [f"| {name} | {pct(t[name]['dev_accuracy'])} | {pct(t[name]['test_accuracy'])} | {t[name]['training_seconds']:.0f} |"
                  for name in ("ensemble", "best member")]
        lines += ["", f"Ensemble against its best member: transformer student {result['transformer_gain']:+.1f} points."]
    return "\n".join(lines + [""])


def arguments(doc: str) -> argparse.Namespace:
    """The command line of a benchmark of BiLSTM students in workers and transformer students: --workers, --no-transformer."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-transformer", action="store_true", help="leave the transformer students out")
    return parser.parse_args()


def main() -> None:
    args = arguments(__doc__)
    quiet_transformers()
    started = time.perf_counter()
    base, values = base_of("quick")
    ensemble = WORK / "ensemble"
    link_shared(base, ensemble / "seed1", ("teacher",))  # the first member: the quick base run's teacher, not retrained
    first = student_row(student_values(ensemble_values(values), 1), ensemble / "seed1")  # fine-tunes the others, annotates
    members = first["members"]
    best = max(members, key=lambda m: m["accuracy"])
    single = WORK / f"member-{best['seed']}"
    if best["seed"] == values["seed"]:
        link_shared(base, single / "seed1", ("teacher", "cache"))
    else:  # that member's folder as this run's teacher (the same fingerprint: its settings and seed)
        from xdistil.folderlock import mark_run_folder

        mark_run_folder(single / "seed1")
        if not (single / "seed1" / "teacher").exists():
            member = ensemble / "seed1" / "teachers" / f"member-{MEMBER_SEEDS.index(best['seed']) + 1}"
            (single / "seed1" / "teacher").symlink_to(member.resolve(), target_is_directory=True)
    best_values = single_values(values, best["seed"])
    first_single = student_row(student_values(best_values, 1), single / "seed1")  # annotates with that member alone
    for seed in STUDENT_SEEDS[1:]:  # the further seeds reuse each first run's teachers and cache
        link_shared(ensemble / "seed1", ensemble / f"seed{seed}", ("teacher", "teachers", "cache"))
        link_shared(single / "seed1", single / f"seed{seed}", ("teacher", "cache"))
    jobs = [Job("run", student_values(ensemble_values(values), s), str(ensemble / f"seed{s}")) for s in STUDENT_SEEDS[1:]]
    jobs += [Job("run", student_values(best_values, s), str(single / f"seed{s}")) for s in STUDENT_SEEDS[1:]]
    run_jobs(jobs, [], args.workers)
    students = {"ensemble": [first] + [student_row(student_values(ensemble_values(values), s), ensemble / f"seed{s}") for s in STUDENT_SEEDS[1:]],
                "best member": [first_single] + [student_row(student_values(best_values, s), single / f"seed{s}") for s in STUDENT_SEEDS[1:]]}
    transformers = {}
    if not args.no_transformer:  # one at a time, with every core (the encoder pays for two threads)
        for name, folder, run_values in (("ensemble", ensemble, ensemble_values(values)), ("best member", single, best_values)):
            link_shared(folder / "seed1", folder / "transformer", ("teacher", "teachers", "cache") if name == "ensemble" else ("teacher", "cache"))
            row = student_row(transformer_values(student_values(run_values, 1)), folder / "transformer")
            transformers[name] = {x: row[x] for x in ("seed", "dev_accuracy", "test_accuracy", "training_seconds")}
    result = {
        "command": "python benchmarks/ensemble.py",
        "setting": "all-MiniLM-L6-v2 fine-tuned with seeds 42, 43, 44 on the classification benchmark's 1,000 labels; "
                   "BiLSTM students, soft loss alone, 3 epochs; 3-layer transformer students, one soft epoch then gold",
        "members": members, "ensemble_teacher_accuracy": first["teacher_accuracy"], "best_member_seed": best["seed"],
        "students": {k: [{x: r[x] for x in ("seed", "dev_accuracy", "test_accuracy", "training_seconds")} for r in v] for k, v in students.items()},
        "teacher_gain": 100 * (first["teacher_accuracy"] - best["accuracy"]),
        "student_gain": 100 * (mean_of(students["ensemble"], "test_accuracy") - mean_of(students["best member"], "test_accuracy")),
        "transformer_students": transformers,
        **({"transformer_gain": 100 * (transformers["ensemble"]["test_accuracy"] - transformers["best member"]["test_accuracy"])}
           if transformers else {}),
        "not_run": "an all-mpnet-base-v2 ensemble (three fine-tunes and annotations of it did not fit beside the other benchmarks); "
                   "the transformer students' further seeds",
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    write_results("ensemble", result, markdown(result))


if __name__ == "__main__":
    main()
