"""The labeling budget's curve: the distilled BiLSTM when the labeler labels 10, 25, 50 or 100% of the transfer set,
chosen at random, for coverage (`diverse`) or in two rounds by a static student's doubt (`uncertain`), over 3 seeds.

The labels come from a file holding the benchmark teacher's own fp32 logits (benchmarks/classification.py's base run:
all-mpnet-base-v2 fine-tuned on 1,000 labels, or MiniLM with --quick), read through `teacher.source: file` - what a
user holding an LLM's labels does, and free here, so every point can be run. The fine-tuned teacher folder stays the
reference encoder: the student's embeddings and the strategies' text vectors come from its table. Each seed is a run
seed (the draw, the k-means starts, the first round) and a student seed. The student learns with the soft loss alone,
min(6, ceil(3 / share)) epochs, so a small share is not also a short training. The best strategy is the one with the
best mean dev accuracy below 100%; every figure is on test. Each run folder keeps what it labeled (`cache/budget.json`).

At 100% and the first seed the run's config is transfer_scale.py's `real-soft/teacher_pca` run but for the labeler:
when that folder is there, the student weights of the two are compared (the file labeler must reproduce the
in-process student exactly).

    python benchmarks/budget_curve.py [--quick] [--workers 2]

Writes benchmarks/results/budget_curve[_quick].json, .md and .png.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.classification import base_of  # noqa: E402
from benchmarks.common import RESULTS, Job, epoch_seconds, final_dev, link_shared, quiet_transformers, run_jobs, write_label_file, write_results  # noqa: E402

STRATEGIES = ("random", "diverse", "uncertain")
MODES = {
    "full": {"classification": "full", "shares": [0.1, 0.25, 0.5], "seeds": [1, 2, 3], "workers": 2},
    "quick": {"classification": "quick", "shares": [0.25], "seeds": [1], "workers": 2},
}
FULL = 1.0


def epochs_for(share: float) -> int:
    """Soft-loss epochs at a labeled share: about as many updates as 3 epochs of the whole set, at most 6 epochs."""
    return min(6, math.ceil(3 / share))


@dataclass(frozen=True)
class Point:
    """One run of the curve: a strategy (None at 100%: nothing to choose), a labeled share and a seed."""

    strategy: str | None
    share: float
    seed: int
    values: dict
    out: Path

    def job(self) -> Job:
        return Job("run", self.values, str(self.out))


def point_values(values: dict, labels: Path, teacher: Path, strategy: str | None, share: float, seed: int) -> dict:
    out = json.loads(json.dumps(values))
    out["seed"] = 41 + seed  # 42 at the first seed: the base run's own seed
    out["threads"] = 1  # one of two one-thread workers
    out["teacher"].update(source="file", labels=str(labels), model=str(teacher))
    out["transfer"].update(budget=None if share == FULL else share, budget_strategy=strategy or "random")
    out["distill"].update(stages=[{"name": "soft", "losses": {"soft": 1.0}, "epochs": epochs_for(share)}], seed=seed)
    return out


@dataclass
class Plan:
    name: str
    mode: dict
    work: Path
    base: Path
    values: dict

    @property
    def labels(self) -> Path:
        return self.work / "teacher-logits.jsonl"

    def whole(self, seed: int) -> Point:
        """Everything labeled: the seed's first run, whose teacher folder its budget runs link."""
        values = point_values(self.values, self.labels, self.base / "teacher", None, FULL, seed)
        return Point(None, FULL, seed, values, self.work / f"seed{seed}" / "all")

    def budgeted(self, seed: int) -> list[Point]:
        return [Point(strategy, share, seed, point_values(self.values, self.labels, self.base / "teacher", strategy, share, seed),
                      self.work / f"seed{seed}" / f"{strategy}-{share:g}")
                for share in self.mode["shares"] for strategy in STRATEGIES]


def make_plan(quick: bool, workers: int | None) -> Plan:
    name = "quick" if quick else "full"
    mode = {**MODES[name], **({"workers": workers} if workers else {})}
    return Plan(name, mode, HERE / "cache" / "budget_curve" / name, *base_of(mode["classification"]))


def finished(point: Point) -> dict:
    """A finished point's figures (loaded from its folder)."""
    from xdistil.config import build_config
    from xdistil.pipeline import Run

    metrics = Run(build_config({**point.values, "out": str(point.out)}, str(point.out))).run()
    budget = point.out / "cache" / "budget.json"
    return {"strategy": point.strategy or "all", "share": point.share, "seed": point.seed, "epochs": epochs_for(point.share),
            "labeled": metrics["data"].get("transfer_labeled", metrics["data"]["transfer"]),
            "dev_accuracy": final_dev(metrics), "test_accuracy": metrics["student"]["accuracy"],
            "training_seconds": epoch_seconds(metrics, "student"), "labeling": str(budget) if budget.is_file() else None}


def summary(points: list[dict], shares: list[float]) -> list[dict]:
    """Mean and spread per (strategy, share); the 100% row stands for every strategy."""
    out = []
    for strategy in ("all", *STRATEGIES):
        for share in ([FULL] if strategy == "all" else shares):
            rows = [p for p in points if p["strategy"] == strategy and p["share"] == share]
            if rows:
                test, dev = [r["test_accuracy"] for r in rows], [r["dev_accuracy"] for r in rows]
                out.append({"strategy": strategy, "share": share, "seeds": len(rows), "labeled": rows[0]["labeled"],
                            "dev_mean": statistics.mean(dev), "test_mean": statistics.mean(test),
                            "test_std": statistics.stdev(test) if len(test) > 1 else 0.0})
    return out


def best_strategy(rows: list[dict]) -> str:
    """The strategy with the best mean dev accuracy over the shares below 100% (chosen on dev, never on test)."""
    means = {s: statistics.mean(r["dev_mean"] for r in rows if r["strategy"] == s) for s in STRATEGIES if any(r["strategy"] == s for r in rows)}
    return max(means, key=means.get)


def file_labeler_check(point: Point, other: Path, base: Path) -> dict | None:
    """The 100% run of the first seed (labels from the file) against the same run with the teacher in process (`other`):
    whether their student weights are identical, and where the two transfer caches' logits differ. A label file holds one
    row per text; a text that occurs twice gets logits in process that can differ in the last bits with the batch it
    was padded in, which no text-keyed file can hold. Then the two students' test predictions are compared too."""
    import numpy as np
    from safetensors.torch import load_file

    from xdistil.student.io import load_student
    from xdistil.transfer.cache import TransferCache

    theirs = other / "student" / "model.safetensors"
    if not theirs.is_file():
        return None
    ours, theirs_ = load_file(point.out / "student" / "model.safetensors"), load_file(theirs)
    identical = ours.keys() == theirs_.keys() and all(bool((ours[k] == theirs_[k]).all()) for k in ours)
    in_process, from_file = (TransferCache(folder / "cache" / "transfer").load().logits for folder in (base, point.out))
    gap = np.abs(in_process - from_file).max(1)
    check = {"identical_weights": identical, "rows": len(gap), "rows_with_other_logits": int((gap > 0).sum()),
             "largest_logit_difference": float(gap.max())}
    if not identical:
        from xdistil.config import build_config
        from xdistil.pipeline import Run

        texts = list(Run(build_config({**point.values, "out": str(point.out)}, str(point.out))).execute("finetune").data.corpus.test.texts)
        a, b = (load_student(folder / "student").predict(texts) for folder in (point.out, other))
        check["test_predictions_agree"] = sum(x == y for x, y in zip(a, b)) / len(texts)
    return check


def markdown(result: dict) -> str:
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = [f"# Labeling budget ({result['mode']})", "", f"`{result['command']}` - labels: {result['labels']}; {result['student']}.", "",
             "| strategy | labeled share | transfer texts labeled | seeds | dev (%) | test (%) | test spread |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['strategy']} | {100 * r['share']:g}% | {r['labeled']:,} | {r['seeds']} | {pct(r['dev_mean'])} | {pct(r['test_mean'])} | "
              f"{pct(r['test_std'])} |" for r in result["curve"]]
    lines += ["", f"Best strategy on dev: **{result['best_strategy']}**. Against random, on test:", ""]
    lines += [f"- {100 * g['share']:g}%: {g['best']:.1f} vs {g['random']:.1f} ({g['gain']:+.1f} points)" for g in result["best_vs_random"]]
    lines += ["", "File labeler against the in-process teacher (100%, first seed, transfer_scale's real-soft/teacher_pca run): "
              + file_check_line(result["file_labeler_check"]), ""]
    return "\n".join(lines)


def file_check_line(check: dict | None) -> str:
    if check is None:
        return "that run was not there."
    if check["identical_weights"]:
        return "the student weights are identical."
    return (f"the student weights differ. The two transfer caches agree but for {check['rows_with_other_logits']} of "
            f"{check['rows']:,} rows, by at most {check['largest_logit_difference']:.1e} (texts that occur twice: in process each copy's "
            f"logits depend on the batch it was padded in, a text-keyed file holds one row); from there training drifts. The two "
            f"students agree on {100 * check['test_predictions_agree']:.1f}% of the test predictions. "
            "tests/test_labelers.py shows identical weights where every text is unique.")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    whole = next(r for r in result["curve"] if r["strategy"] == "all")
    for strategy in STRATEGIES:
        rows = sorted([r for r in result["curve"] if r["strategy"] == strategy], key=lambda r: r["share"]) + [whole]
        ax.errorbar([100 * r["share"] for r in rows], [100 * r["test_mean"] for r in rows], yerr=[100 * r["test_std"] for r in rows],
                    marker="o", capsize=3, label=strategy)
    ax.set_xscale("log")
    ax.set_xlabel("transfer texts labeled (%)")
    ax.set_ylabel("student test accuracy (%)")
    ax.set_title("BiLSTM student against the labeling budget")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="MiniLM teacher, one share, one seed")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    quiet_transformers()
    from xdistil.config import build_config
    from xdistil.pipeline import Run

    started = time.perf_counter()
    plan = make_plan(args.quick, args.workers)
    write_label_file(plan.labels, Run(build_config(plan.values, "base")).execute(until="annotate"))
    wholes = [plan.whole(seed) for seed in plan.mode["seeds"]]
    run_jobs([p.job() for p in wholes], [], plan.mode["workers"])
    points = [finished(p) for p in wholes]
    budgeted = [p for seed in plan.mode["seeds"] for p in plan.budgeted(seed)]
    for point in budgeted:  # the seed's reference encoder, saved once by its 100% run
        link_shared(plan.work / f"seed{point.seed}" / "all", point.out, ("teacher",))
    run_jobs([p.job() for p in budgeted], [], plan.mode["workers"])
    points += [finished(p) for p in budgeted]
    curve = summary(points, plan.mode["shares"])
    best = best_strategy(curve)
    by = {(r["strategy"], r["share"]): r for r in curve}
    result = {
        "mode": plan.name, "command": "python benchmarks/budget_curve.py" + (" --quick" if args.quick else ""),
        "labels": f"a file of the fine-tuned {plan.values['teacher']['model'].rsplit('/', 1)[-1]}'s fp32 logits (teacher.source: file)",
        "student": "BiLSTM (default shape, teacher_pca embeddings), soft loss alone, min(6, ceil(3 / share)) epochs",
        "pool": points[0]["labeled"], "seeds": plan.mode["seeds"], "points": points, "curve": curve, "best_strategy": best,
        "best_vs_random": [{"share": s, "best": 100 * by[(best, s)]["test_mean"], "random": 100 * by[("random", s)]["test_mean"],
                            "gain": 100 * (by[(best, s)]["test_mean"] - by[("random", s)]["test_mean"])} for s in plan.mode["shares"]],
        "file_labeler_check": file_labeler_check(wholes[0], HERE / "cache" / "transfer_scale" / plan.name / "real-soft" / "teacher_pca", plan.base),
        "timing": "training seconds are one thread's, two runs side by side",
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    suffix = "" if plan.name == "full" else "_quick"
    write_results(f"budget_curve{suffix}", result, markdown(result))
    plot(result, RESULTS / f"budget_curve{suffix}.png")


if __name__ == "__main__":
    main()
