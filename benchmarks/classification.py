"""Classification benchmark: quality kept, compression and speed against a BERT-base-class teacher.

The built-in rotten_tomatoes low-resource setting (1,000 labeled snippets, split by movie, the
rest unlabeled transfer text). The teacher (all-mpnet-base-v2, or MiniLM with --quick) is
fine-tuned once and its annotation cached; every student row reuses them (symlinked run
folders), so a re-run pays only for the student rows. Rows, each over the seeds: the teacher;
the BiLSTM on gold labels only; hard distillation only; soft logits only; the default schedule;
the default schedule without the representation stage; the default schedule on an augmented
transfer set. Also: accuracy against the transfer-set size, one smaller labeled set, CPU latency
at batch 1/32/256 of every model timed in this one process, and the teacher's annotation
throughput against a naive `transformers` pipeline on the same texts. Beside the BiLSTM rows:
pre-trained transformer students (all-MiniLM-L6-v2 cut to N layers, pruned vocabulary), each
distilled and each fine-tuned on the gold labels alone, and the peer a user would pick instead:
SetFit with the same MiniLM body on the same 1,000 labels. The JSON's `frontier` lists the rows no
other row beats on both accuracy and batch-32 latency. Models are selected on dev; every figure is on test.

    python benchmarks/classification.py            # full mode (all-mpnet-base-v2, 3 seeds)
    python benchmarks/classification.py --quick    # MiniLM teacher, one seed, fewer rows
    python benchmarks/classification.py --families transformer,peer   # only those rows; the JSON's others are kept

Writes benchmarks/results/classification[_quick].json, .md and two plots.
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

RESULTS = HERE / "results"
DEFAULT = "default schedule"
FAMILIES = ("bilstm", "transformer", "peer")
PEER = "SetFit peer (MiniLM-L6 body)"
MODES = {
    "full": {
        "teacher": "mpnet", "teacher_epochs": 3, "teacher_lr": 3e-5, "seeds": [1, 2, 3],
        "rows": ["gold only", "hard only", "soft only", DEFAULT, "default without representation", "default + augmentation"],
        "transfer_sizes": [0, 1000, 2000, 5000], "small_labeled": 300, "augment_factor": 1, "stage_epochs": None,
        "augment_seeds": [3],  # its student trains on twice the texts; three seeds did not fit the session
        "latency_repeats": {1: 30, 32: 10, 256: 4}, "annotation_texts": 1000, "workers": 2,
        # pre-trained transformer students cut from all-MiniLM-L6-v2 (layers kept: seeds). On the 2-core CPU an epoch over the
        # 16k transfer texts takes ~3 min (3 layers) to ~6 min (6 layers) in a one-thread worker: transfer stages capped at 3 epochs
        "transformers": {6: [1, 2, 3], 3: [1]}, "transformer_epochs": 3, "transformer_transfer": None, "transformer_baseline_epochs": 4,
        "peer": {"num_iterations": 1, "max_seq_length": 128},
    },
    "quick": {
        "teacher": "minilm-l6", "teacher_epochs": 3, "teacher_lr": 5e-5, "seeds": [1],
        "rows": ["gold only", "hard only", "soft only", DEFAULT],
        "transfer_sizes": [0, 2000], "small_labeled": None, "augment_factor": 0, "stage_epochs": 3,
        "latency_repeats": {1: 20, 32: 6, 256: 2}, "annotation_texts": 400, "workers": 2,
        "transformers": {3: [1]}, "transformer_epochs": 1, "transformer_transfer": 2000, "transformer_baseline_epochs": 4,
        "peer": {"num_iterations": 1, "max_seq_length": 64},
    },
}


def stages_for(row: str, epochs: int | None) -> list[dict] | None:
    """The stage list of a row (None: the default paper schedule)."""
    from xdistil.config import paper_schedule

    schedule = [s.model_dump() for s in paper_schedule()]
    if epochs is not None:
        for stage in schedule:
            stage["epochs"] = min(stage["epochs"], epochs)
    longest = 2 * (epochs or 6)  # early stopping on dev ends most runs sooner
    if row == "gold only":
        return [{"name": "gold only", "losses": {"gold": 1.0}, "data": "labeled", "epochs": 10 * (epochs or 3)}]
    if row == "hard only":
        return [{"name": "hard", "losses": {"hard": 1.0}, "epochs": longest}]
    if row == "soft only":
        return [{"name": "soft", "losses": {"soft": 1.0}, "epochs": longest}]
    if row == "default without representation":
        return schedule[1:]
    return schedule


def base_values(mode: dict, teacher: str, out: Path, seed: int = 42) -> dict:
    """The run config shared by all rows: the demo's data split with this mode's teacher."""
    from xdistil.config import config_to_dict
    from xdistil.presets import demo_config

    values = config_to_dict(demo_config(out))
    values["seed"] = seed
    values["device"] = "cpu"
    values["teacher"].update(model=teacher, epochs=mode["teacher_epochs"], lr=mode["teacher_lr"])
    values["evaluation"].update(baseline=False, latency_batch_sizes=[])  # latency is timed here, once per model
    return values


def link_shared(base: Path, out: Path, names: tuple[str, ...]) -> None:
    """Symlink the base folder's finished parts (teacher, caches) into another run folder (marked as one first)."""
    from xdistil.folderlock import mark_run_folder

    mark_run_folder(out)
    for name in names:
        link = out / name
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to((base / name).resolve(), target_is_directory=True)


def run_row(values: dict, base: Path, out: Path) -> tuple[dict, object]:
    """Run a student row in its own folder, reusing the base folder's teacher and annotation."""
    from xdistil.config import build_config
    from xdistil.pipeline import Run

    link_shared(base, out, ("teacher", "cache"))
    values = {**values, "out": str(out)}
    run = Run(build_config(values, str(out)))
    return run.run(), run


def prepare_token_cache(values: dict, base: Path, out: Path) -> None:
    """Make a transformer student's token cache in the shared base cache (through one row's folder) before
    worker processes read it: two workers would otherwise both write it."""
    from xdistil.config import build_config
    from xdistil.pipeline import Run

    link_shared(base, out, ("teacher", "cache"))
    Run(build_config({**values, "out": str(out)}, "tokens")).run(until="annotate")


def _one_thread() -> None:
    """Worker set-up: one torch thread, quiet transformers."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)


def _job(job: tuple[str, dict, str, str]) -> str:
    """One unit of work: annotate, a whole run, or a student row; leaves a finished run folder."""
    from xdistil.config import build_config
    from xdistil.pipeline import Run

    kind, values, base, out = job
    if kind == "row":
        run_row(values, Path(base), Path(out))
    else:
        Run(build_config({**values, "out": out}, out)).run(until="annotate" if kind == "annotate" else "evaluate")
    return out


def run_jobs(first: list[tuple], then: list[tuple], workers: int) -> None:
    """Run the jobs in `workers` processes of one thread each (the students are too small for two
    threads to pay), `then` once `first[0]` has finished. Every job leaves a finished run folder, so
    the sequential pass that follows only loads them."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from xdistil.progress import log

    if workers < 2 or not first:
        return
    log(f"benchmark: {len(first) + len(then)} jobs in {workers} one-thread worker processes")
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread) as pool:
        futures = [pool.submit(_job, job) for job in first]
        futures[0].result()
        futures += [pool.submit(_job, job) for job in then]
        for future in futures:
            log(f"benchmark: finished {future.result()}")


def texts_per_second(model, tokenizer, texts: list[str]) -> float:
    """Texts per second of xdistil's annotation path (length-sorted batches of 32, dynamic padding,
    inference mode), after one warm-up batch."""
    from xdistil.teacher.inference import teacher_outputs
    from xdistil.text import tokenize

    ids, _ = tokenize(tokenizer, texts[:32], 128)
    for _ in teacher_outputs(model, ids, tokenizer.pad_token_id, 32, None, "first"):
        pass
    started = time.perf_counter()
    ids, _ = tokenize(tokenizer, texts, 128)
    for _ in teacher_outputs(model, ids, tokenizer.pad_token_id, 32, None, "first"):
        pass
    return len(texts) / (time.perf_counter() - started)


def annotation_speed(run, texts: list[str]) -> dict:
    """Texts per second: xdistil's teacher path (length-sorted batches, dynamic padding, inference
    mode) against a `transformers` text-classification pipeline on the same unsorted texts."""
    import torch
    from transformers import pipeline

    teacher, tokenizer = run.teacher.model.to("cpu").eval(), run.tokenizer
    naive = pipeline("text-classification", model=teacher, tokenizer=tokenizer, device=-1, truncation=True, max_length=128)
    naive(texts[:32], batch_size=32)  # warm-up, both paths
    started = time.perf_counter()
    naive(texts, batch_size=32)
    naive_s = time.perf_counter() - started
    ours_s = len(texts) / texts_per_second(teacher, tokenizer, texts)
    return {
        "texts": len(texts), "batch_size": 32, "threads": torch.get_num_threads(),
        "pipeline_texts_per_s": len(texts) / naive_s, "xdistil_texts_per_s": len(texts) / ours_s,
        "annotation_speedup_vs_pipeline": naive_s / ours_s,
    }


def latencies(run, students: dict[str, tuple], repeats: dict[int, int]) -> dict[str, dict[str, float]]:
    """Median ms per batch of the teacher and each student on the same test texts, this process, CPU.

    A student is (model, vocabulary, its own token ids of the test texts); a peer is
    (forward, inputs(text indices), None): its own forward on its own inputs of the same texts.
    """
    from xdistil.evaluation.latency import measure_latency
    from xdistil.student.inputs import batch_inputs
    from xdistil.teacher.inference import pad_teacher

    ids = run.annotation.caches["test"].load().ids
    teacher = run.teacher.model.to("cpu").eval()
    result: dict[str, dict[str, float]] = {"teacher": {}}
    for size, count in repeats.items():
        rows = [[(b * size + i) % len(ids) for i in range(size)] for b in range(count)]
        teacher_batches = [pad_teacher([ids[i] for i in b], run.tokenizer.pad_token_id) for b in rows]
        result["teacher"][f"batch_{size}"] = measure_latency(lambda b: teacher(**b), teacher_batches, size)["median_ms"]
        for name, (model, vocab, own_ids) in students.items():
            if own_ids is None:
                batches = [vocab(b) for b in rows]
            else:
                batches = [batch_inputs([vocab.encode(own_ids[i]) for i in b], vocab.pad_id) for b in rows]
                model = model.to("cpu").eval()
            result.setdefault(name, {})[f"batch_{size}"] = measure_latency(model, batches, size)["median_ms"]
    return result


def epoch_seconds(metrics: dict, part: str) -> float:
    """Seconds spent in the training epochs of a run's teacher or student (stage histories survive a
    resumed run, unlike its wall-clock timings)."""
    return sum(e["seconds"] for stage in metrics["stages"].get(part, []) for e in stage["epochs"])


def summarise(
    name: str, runs: list[dict], params: int, params_no_emb: int, teacher: dict, latency: dict, family: str = "bilstm",
    distilled: bool | None = None, part: str = "student",
) -> dict:
    """A table row over the seeds' metrics; `part` is the metrics' student or its no-distillation twin."""
    figures = [m[part] for m in runs]
    accuracy = [f["accuracy"] for f in figures]
    stages = "student" if part == "student" else "baseline"
    row = {
        "name": name,
        "family": family,
        "distilled": name != "gold only" if distilled is None else distilled,
        "seeds": len(runs),
        "accuracy_mean": statistics.mean(accuracy),
        "accuracy_std": statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
        "accuracy_per_seed": accuracy,
        "macro_f1_mean": statistics.mean(f["macro_f1"] for f in figures),
        "loyalty_mean": statistics.mean(f["loyalty"] for f in figures),
        "params": params,
        "params_without_embeddings": params_no_emb,
        "compression": teacher["params"] / params,
        "latency_ms": latency,
        "training_seconds_mean": statistics.mean(epoch_seconds(m, stages) for m in runs),
    }
    for size, ms in latency.items():
        row[f"speedup_{size}"] = teacher["latency_ms"][size] / ms
    return row


def plots(result: dict, folder: Path, suffix: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    teacher = result["teacher"]
    ax.scatter([teacher["latency_ms"]["batch_32"]], [100 * teacher["accuracy"]], marker="*", s=160, label="teacher")
    markers = {"bilstm": "o", "transformer": "s", "peer": "D"}
    for row in result["rows"]:
        ax.errorbar([row["latency_ms"]["batch_32"]], [100 * row["accuracy_mean"]], yerr=[100 * row["accuracy_std"]],
                    fmt=markers.get(row.get("family", "bilstm"), "o"), label=row["name"])
    points = {"teacher": (teacher["latency_ms"]["batch_32"], teacher["accuracy"])}
    points.update({r["name"]: (r["latency_ms"]["batch_32"], r["accuracy_mean"]) for r in result["rows"]})
    edge = sorted(points[n] for n in result.get("frontier", []))
    if edge:
        ax.step([x for x, _ in edge], [100 * y for _, y in edge], where="post", color="grey", linestyle=":", label="frontier")
    ax.set_xscale("log")
    names.append(_save(fig, ax, folder / f"classification{suffix}_accuracy_latency.png",
                       "CPU latency at batch 32 (median ms, log scale)", "accuracy against batch-32 latency"))
    curve = result["transfer_size_curve"]
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [p["transfer_texts"] for p in curve]
    ax.plot(xs, [100 * p["accuracy"] for p in curve], "o-", label="default schedule")
    ax.axhline(100 * teacher["accuracy"], color="grey", linestyle="--", label="teacher")
    ax.set_xscale("symlog", linthresh=1000)
    names.append(_save(fig, ax, folder / f"classification{suffix}_transfer_size.png",
                       "unlabeled transfer texts", "accuracy against transfer-set size (1,000 labeled)"))
    return names


def _save(fig, ax, path: Path, xlabel: str, title: str) -> str:
    """Label, save and close a figure; returns its file name."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def spread(row: dict) -> str:
    """Mean ± std over the seeds, or the one seed's figure said as such."""
    if row["seeds"] == 1:
        return f"{100 * row['accuracy_mean']:.1f} (1 seed)"
    return f"{100 * row['accuracy_mean']:.1f} ± {100 * row['accuracy_std']:.1f}"


def markdown(result: dict, images: list[str]) -> str:
    teacher = result["teacher"]
    lines = [
        f"# Classification benchmark ({result['mode']})",
        "",
        f"`{result['command']}` - teacher {result['teacher_name']}, rotten_tomatoes with 1,000 labels, test split "
        f"({result['data']['test']:,} snippets), models selected on dev; {result['threads']} CPU threads; mean ± std over "
        f"{len(result['seeds'])} seed(s).",
        "",
        "| model | family | accuracy (%) | macro-F1 (%) | loyalty (%) | parameters | without embeddings | compression | "
        "batch 1 (ms) | batch 32 (ms) | batch 256 (ms) | speed-up at 32 | training (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| teacher | - | {100 * teacher['accuracy']:.1f} | {100 * teacher['macro_f1']:.1f} | - | {teacher['params']:,} | "
        f"{teacher['params_without_embeddings']:,} | 1.0x | "
        + " | ".join(f"{teacher['latency_ms'][f'batch_{b}']:.1f}" for b in (1, 32, 256))
        + f" | 1.0x | {teacher['training_seconds']:.0f} |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['name']} | {row.get('family', 'bilstm')}{'' if row['distilled'] else ' (not distilled)'} | {spread(row)} | "
            f"{100 * row['macro_f1_mean']:.1f} | "
            f"{100 * row['loyalty_mean']:.1f} | {row['params']:,} | {row['params_without_embeddings']:,} | {row['compression']:.1f}x | "
            + " | ".join(f"{row['latency_ms'][f'batch_{b}']:.2f}" for b in (1, 32, 256))
            + f" | {row['speedup_batch_32']:.1f}x | {row['training_seconds_mean']:.0f} |"
        )
    speed = result["annotation"]
    lines += ["", f"Frontier (no other model is both more accurate and faster at batch 32): {', '.join(result['frontier'])}."]
    if result.get("kept_note"):
        lines += ["", f"Note: {result['kept_note']}."]
    lines += [
        "",
        f"Teacher annotation: {speed['xdistil_texts_per_s']:.1f} texts/s in xdistil against {speed['pipeline_texts_per_s']:.1f} "
        f"texts/s for a `transformers` pipeline on the same {speed['texts']:,} unsorted texts: "
        f"**{speed['annotation_speedup_vs_pipeline']:.2f}x**.",
        "",
        "Transfer-set size (default schedule, 1,000 labeled): "
        + ", ".join(f"{p['transfer_texts']:,} -> {100 * p['accuracy']:.1f}%" for p in result["transfer_size_curve"]),
    ]
    if result.get("small_labeled"):
        s = result["small_labeled"]
        lines.append(f"\n{s['labeled']} labeled: teacher {100 * s['teacher_accuracy']:.1f}%, default student {100 * s['student_accuracy']:.1f}%, "
                     f"gold-only {100 * s['gold_only_accuracy']:.1f}%.")
    lines += ["", "## Goals", ""] + [f"- {g['goal']}: {g['measured']} - **{'met' if g['met'] else 'missed'}**" for g in result["goals"]]
    lines += ["", *[f"![{name}]({name})" for name in images], ""]
    return "\n".join(lines)


def goals(result: dict) -> list[dict]:
    teacher = result["teacher"]
    rows = {r["name"]: r for r in result["rows"]}
    students = [r for n, r in rows.items() if n.startswith("default")]
    best = max(students, key=lambda r: r["accuracy_mean"])
    gap = 100 * (best["accuracy_mean"] - teacher["accuracy"])
    out = [{"goal": "best default-schedule student >= teacher - 1.0 point", "measured": f"{best['name']}: {gap:+.1f} points",
            "met": gap >= -1.0, "by": gap + 1.0}]
    if "hard only" in rows:
        diff = 100 * (best["accuracy_mean"] - rows["hard only"]["accuracy_mean"])
        out.append({"goal": "best student not below hard-only", "measured": f"{diff:+.1f} points", "met": diff >= 0, "by": diff})
    diff = 100 * (best["accuracy_mean"] - rows["gold only"]["accuracy_mean"])
    out.append({"goal": "best student beats gold-only by >= 3 points", "measured": f"{diff:+.1f} points", "met": diff >= 3.0, "by": diff - 3.0})
    default = rows[DEFAULT]
    out.append({"goal": "default student >= 26x fewer parameters", "measured": f"{default['compression']:.1f}x",
                "met": default["compression"] >= 26, "by": default["compression"] - 26})
    out.append({"goal": "default student >= 51x faster at batch 32 (CPU)", "measured": f"{default['speedup_batch_32']:.1f}x",
                "met": default["speedup_batch_32"] >= 51, "by": default["speedup_batch_32"] - 51})
    speed = result["annotation"]["annotation_speedup_vs_pipeline"]
    out.append({"goal": "annotation >= 1.5x faster than the transformers pipeline", "measured": f"{speed:.2f}x",
                "met": speed >= 1.5, "by": speed - 1.5})
    if result["mode"] == "full":
        diff = round(100 * default["accuracy_mean"], 1) - 78.5  # the published figure, rounded as published
        out.append({"goal": "BiLSTM default schedule not below 78.5% (before transformer students)",
                    "measured": f"{100 * default['accuracy_mean']:.1f}%", "met": diff >= 0, "by": diff})
    distilled = [r for r in result["rows"] if r.get("family") == "transformer" and r["distilled"]]
    if distilled:
        best = max(distilled, key=lambda r: r["accuracy_mean"])
        gap = 100 * (best["accuracy_mean"] - teacher["accuracy"])
        seeds = f"mean of {best['seeds']} seed(s)"
        out.append({"goal": "best distilled transformer student within 2.0 points of the teacher (mean of 3 seeds)",
                    "measured": f"{best['name']}: {gap:+.1f} points ({seeds})", "met": gap >= -2.0 and best["seeds"] >= 3, "by": gap + 2.0})
        out.append({"goal": "that student >= 5x fewer parameters", "measured": f"{best['compression']:.1f}x",
                    "met": best["compression"] >= 5, "by": best["compression"] - 5})
        out.append({"goal": "that student >= 5x faster at batch 32 (CPU, same process)", "measured": f"{best['speedup_batch_32']:.1f}x",
                    "met": best["speedup_batch_32"] >= 5, "by": best["speedup_batch_32"] - 5})
        twin = rows.get(best["name"].replace("distilled", "gold only"))
        if twin:
            diff = 100 * (best["accuracy_mean"] - twin["accuracy_mean"])
            out.append({"goal": "that student >= 2 points above the same student fine-tuned on gold alone",
                        "measured": f"{diff:+.1f} points", "met": diff >= 2.0, "by": diff - 2.0})
    return out


def transformer_search() -> list[dict]:
    """What was tried to close the transformer student's gap: each dev search's variants (benchmarks/transformer_search.py)."""
    found = []
    for path in sorted(RESULTS.glob("transformer_search_*.json")):
        search = json.loads(path.read_text())
        found.append({
            "file": str(path.relative_to(HERE.parent)), "student": search["student"], "seed": search["seed"],
            "selected_on": search["selected_on"], "best_on_dev": search["best_on_dev"],
            "variants": [{k: row.get(k) for k in ("variant", "dev_accuracy", "test_accuracy")} for row in search["rows"]],
        })
    return found


def augmented_values(values: dict, mode: dict) -> dict:
    """A copy of the run values with this mode's transfer-set augmentation switched on."""
    out = json.loads(json.dumps(values))
    out["transfer"]["augment"]["factor"] = mode["augment_factor"]
    return out


def row_plan(mode: dict, values: dict, base: Path, augmented: Path, work: Path) -> list[tuple[str, int, dict, Path, Path]]:
    """(row, seed, run values, folder whose teacher and cache it reuses, its own folder) for every row and seed."""
    plan = []
    for row in mode["rows"]:
        augmenting = row == "default + augmentation"
        row_values = augmented_values(values, mode) if augmenting else json.loads(json.dumps(values))
        folder_base = augmented if augmenting else base
        row_values["distill"]["stages"] = stages_for("default" if augmenting else row, mode["stage_epochs"])
        for seed in mode.get("augment_seeds", mode["seeds"]) if augmenting else mode["seeds"]:
            seeded = json.loads(json.dumps(row_values))
            seeded["distill"]["seed"] = seed
            slug = row.replace(" ", "_").replace("+", "plus")
            plan.append((row, seed, seeded, folder_base, work / "rows" / f"{slug}-seed{seed}"))
    return plan


def curve_jobs(mode: dict, values: dict, base: Path, work: Path) -> list[tuple[dict, Path]]:
    """The default schedule (first seed) on the first N transfer texts, for each N of the curve."""
    jobs = []
    for size in mode["transfer_sizes"]:
        curve_values = json.loads(json.dumps(values))
        curve_values["distill"].update(stages=stages_for(DEFAULT, mode["stage_epochs"]), seed=mode["seeds"][0], transfer_limit=size)
        jobs.append((curve_values, work / "curve" / f"transfer-{size}"))
    return jobs


def small_labeled_values(mode: dict, values: dict, work: Path) -> dict | None:
    """A whole run (its own teacher and annotation) with fewer labeled texts, or None."""
    if not mode["small_labeled"]:
        return None
    small_values = json.loads(json.dumps(values))
    small_values["data"]["train_size"] = mode["small_labeled"]
    # as many teacher steps as with 1,000 labels: 3 epochs of 300 snippets (28 steps) left the teacher at the majority class
    small_values["teacher"]["epochs"] = round(mode["teacher_epochs"] * 1000 / mode["small_labeled"])
    small_values["out"] = str(work / f"labeled-{mode['small_labeled']}")
    small_values["evaluation"]["baseline"] = True
    small_values["distill"]["stages"] = stages_for(DEFAULT, mode["stage_epochs"])
    return small_values


def transformer_plan(mode: dict, values: dict, work: Path) -> list[tuple[int, int, dict, Path]]:
    """(layers kept, seed, run values, own folder) of every transformer-student run: all-MiniLM-L6-v2 cut
    to that many layers, the family's default schedule; each run also trains its gold-only twin."""
    from xdistil.config import with_family
    from xdistil.student.transformer import TRANSFORMER_SCHEDULE

    plan = []
    for layers, seeds in mode["transformers"].items():
        stages = [dict(stage) for stage in TRANSFORMER_SCHEDULE]
        for stage in stages:  # the budget caps the stages over the transfer set; the 1,000 gold labels are cheap
            if stage["data"] == "transfer":
                stage["epochs"] = min(stage["epochs"], mode["transformer_epochs"])
        for seed in seeds:
            run_values = json.loads(json.dumps(values))
            run_values = with_family(run_values, "transformer", encoder="minilm-l6", layers=layers)
            run_values["distill"].update(stages=stages, seed=seed, transfer_limit=mode["transformer_transfer"])
            run_values["evaluation"].update(baseline=True, baseline_epochs=mode["transformer_baseline_epochs"])
            plan.append((layers, seed, run_values, work / "transformers" / f"{layers}L-seed{seed}"))
    return sorted(plan, key=lambda job: job[1])  # every size's first seed first


def setfit_peer(run, mode: dict, work: Path, seed: int) -> tuple[dict, tuple]:
    """SetFit with the all-MiniLM-L6-v2 body on the same 1,000 labels (contrastive pairs, then a
    logistic-regression head): its test figures, and (forward, inputs) to time it on the same texts.
    The trained model and its figures are cached in `work/setfit`."""
    import numpy as np
    import torch
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from xdistil.evaluation.metrics import classification_metrics
    from xdistil.teacher.models import resolve_teacher

    folder, corpus = work / "setfit", run.data.corpus
    saved = folder / "figures.json"
    if saved.is_file():
        figures = json.loads(saved.read_text())
        model = SetFitModel.from_pretrained(str(folder / "model"))
    else:
        model = SetFitModel.from_pretrained(resolve_teacher("minilm-l6"))
        model.model_body.max_seq_length = mode["peer"]["max_seq_length"]
        args = TrainingArguments(
            output_dir=str(folder / "checkpoints"), batch_size=16, num_epochs=1, num_iterations=mode["peer"]["num_iterations"],
            seed=seed, report_to="none", save_strategy="no",
        )
        started = time.perf_counter()
        Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": corpus.train.texts, "label": corpus.train.labels})).train()
        seconds = time.perf_counter() - started
        predicted = np.asarray(model.predict(corpus.test.texts))
        teacher = run.annotation.caches["test"].load().logits.argmax(1)
        body = sum(p.numel() for p in model.model_body.parameters())
        head = int(model.model_head.coef_.size + model.model_head.intercept_.size)
        embeddings = sum(p.numel() for p in model.model_body[0].auto_model.get_input_embeddings().parameters())
        figures = {
            **classification_metrics(predicted, np.asarray(corpus.test.labels)), "loyalty": float((predicted == teacher).mean()),
            "params": body + head, "params_without_embeddings": body + head - embeddings, "training_seconds": seconds,
            "settings": {"num_epochs": 1, **mode["peer"], "batch_size": 16, "seed": seed},
        }
        model.save_pretrained(str(folder / "model"))
        saved.write_text(json.dumps(figures, indent=2))
    texts = corpus.test.texts

    def inputs(rows: list[int]) -> dict:
        return model.model_body.tokenize([texts[i % len(texts)] for i in rows])

    def forward(features: dict) -> np.ndarray:
        with torch.inference_mode():
            return model.model_head.predict(model.model_body(features)["sentence_embedding"].numpy())

    return figures, (forward, inputs, None)


def frontier(result: dict) -> list[str]:
    """Names of the models (teacher and rows) that no other model beats on both accuracy and batch-32 latency."""
    points = [("teacher", result["teacher"]["accuracy"], result["teacher"]["latency_ms"]["batch_32"])]
    points += [(r["name"], r["accuracy_mean"], r["latency_ms"]["batch_32"]) for r in result["rows"]]
    return [
        name for name, acc, ms in points
        if not any(a >= acc and m <= ms and (a > acc or m < ms) for other, a, m in points if other != name)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="MiniLM teacher, one seed, fewer rows")
    parser.add_argument("--workers", type=int, default=None, help="worker processes for the student rows (default: the mode's)")
    parser.add_argument("--base-only", action="store_true",
                        help="only fine-tune the teacher and annotate the transfer set (the base folder the rows and the search reuse)")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help="rows to run: bilstm, transformer, peer (comma-separated); rows of the others are kept from the last JSON")
    args = parser.parse_args()
    families = [f for f in args.families.split(",") if f]
    if not set(families) <= set(FAMILIES):
        parser.error(f"--families takes {', '.join(FAMILIES)}")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    import torch

    from benchmarks.resources.mpnet import all_mpnet_base_v2
    from xdistil.config import build_config
    from xdistil.pipeline import Run
    from xdistil.progress import log
    from xdistil.teacher.models import count_parameters

    name = "quick" if args.quick else "full"
    mode = {**MODES[name], **({"workers": args.workers} if args.workers else {})}
    suffix = "" if name == "full" else "_quick"
    started = time.perf_counter()
    teacher_name = "all-MiniLM-L6-v2 (built-in minilm-l6)" if mode["teacher"] == "minilm-l6" else "all-mpnet-base-v2"
    teacher_model = "minilm-l6" if mode["teacher"] == "minilm-l6" else str(all_mpnet_base_v2())
    work = HERE / "cache" / "classification" / name
    base = work / "base"
    values = base_values(mode, teacher_model, base)
    log("benchmark: fine-tuning and annotating once (cached in the base run folder)")
    base_run = Run(build_config(values, "base"))
    base_run.run(until="annotate")
    if args.base_only:
        log(f"benchmark: base folder ready in {time.perf_counter() - started:.0f} s: {base}")
        return

    bilstm = "bilstm" in families
    augmented = work / "augmented"
    plan = row_plan(mode, values, base, augmented, work) if bilstm else []
    curve_plan = curve_jobs(mode, values, base, work) if bilstm else []
    small_values = small_labeled_values(mode, values, work) if bilstm else None
    transformers = transformer_plan(mode, values, work) if "transformer" in families else []
    jobs: list[tuple] = []
    augment_job = None
    if any(folder_base == augmented for _, _, _, folder_base, _ in plan):
        link_shared(base, augmented, ("teacher", "cache/dev", "cache/test"))  # same teacher, same dev/test texts
        augment_job = ("annotate", augmented_values(values, mode), "", str(augmented))
        jobs.append(augment_job)
    if small_values:
        jobs.append(("run", small_values, "", small_values["out"]))
    if transformers:
        prepare_token_cache(transformers[0][2], base, transformers[0][3])
    jobs += [("row", v, str(base), str(o)) for _, _, v, o in transformers]
    jobs += [("row", v, str(b), str(o)) for _, _, v, b, o in plan if b == base] + [("row", v, str(base), str(o)) for v, o in curve_plan]
    run_jobs(jobs, [("row", v, str(b), str(o)) for _, _, v, b, o in plan if b == augmented], mode["workers"])

    row_metrics: dict[str, list[dict]] = {}
    students: dict[str, tuple] = {}
    sizes: dict[str, tuple[int, int]] = {}
    if augment_job:
        _job(augment_job)  # annotates the augmented transfer set, or finds it done
    for row, seed, row_values, folder_base, out in plan:
        metrics, run = run_row(row_values, folder_base, out)
        row_metrics.setdefault(row, []).append(metrics)
        log(f"{row} seed {seed}: accuracy {100 * metrics['student']['accuracy']:.1f}%")
        model, _ = run.student
        students[row] = (model, run.vocab, run.inputs["test"].load().ids)
        sizes[row] = (count_parameters(model), count_parameters(model) - sum(p.numel() for p in model.embedding_parameters()))
    transformer_metrics: dict[int, list[dict]] = {}
    for layers, seed, row_values, out in transformers:
        metrics, run = run_row(row_values, base, out)
        transformer_metrics.setdefault(layers, []).append(metrics)
        log(f"transformer {layers}L seed {seed}: accuracy {100 * metrics['student']['accuracy']:.1f}% "
            f"(gold only {100 * metrics['baseline_no_distillation']['accuracy']:.1f}%)")
        test_ids = run.inputs["test"].load().ids
        for twin, model in ((f"transformer {layers}L distilled", run.student.model), (f"transformer {layers}L gold only", run.baseline.model)):
            students[twin] = (model, run.vocab, test_ids)
            sizes[twin] = (count_parameters(model), count_parameters(model) - sum(p.numel() for p in model.embedding_parameters()))
    peer = setfit_peer(base_run, mode, work, mode["seeds"][0]) if "peer" in families else None
    if peer:
        students[PEER] = peer[1]

    curve = []
    for (curve_values, out), size in zip(curve_plan, mode["transfer_sizes"]):
        metrics, _ = run_row(curve_values, base, out)
        curve.append({"transfer_texts": size, "accuracy": metrics["student"]["accuracy"]})
    if bilstm:
        total_transfer = base_run.transfer.count_and_fingerprint[0] - len(base_run.data.corpus.train)
        curve.append({"transfer_texts": total_transfer, "accuracy": row_metrics[DEFAULT][0]["student"]["accuracy"]})

    small = None
    if small_values:
        metrics = Run(build_config(small_values, "small")).run()
        small = {"labeled": mode["small_labeled"], "teacher_accuracy": metrics["teacher"]["accuracy"],
                 "student_accuracy": metrics["student"]["accuracy"], "gold_only_accuracy": metrics["baseline_no_distillation"]["accuracy"]}

    texts = list(base_run.data.corpus.transfer)[: mode["annotation_texts"]]
    annotation = annotation_speed(base_run, texts) if bilstm else None
    latency = latencies(base_run, students, mode["latency_repeats"])
    first = next(iter(row_metrics.values()), None) or next(iter(transformer_metrics.values()))
    first = first[0]
    teacher = {
        "name": teacher_name,
        "accuracy": first["teacher"]["accuracy"],
        "macro_f1": first["teacher"]["macro_f1"],
        "params": first["teacher"]["params"],
        "params_without_embeddings": first["teacher"]["params_without_embeddings"],
        "latency_ms": latency["teacher"],
        "training_seconds": epoch_seconds(first, "teacher"),
    }
    rows = [summarise(r, row_metrics[r], *sizes[r], teacher, latency[r]) for r in mode["rows"] if r in row_metrics]
    for layers, runs in transformer_metrics.items():
        for twin, part in (("distilled", "student"), ("gold only", "baseline_no_distillation")):
            row = f"transformer {layers}L {twin}"
            rows.append(summarise(row, runs, *sizes[row], teacher, latency[row], "transformer", part == "student", part))
    if peer:
        figures = peer[0]
        rows.append({
            "name": PEER, "family": "peer", "distilled": False, "seeds": 1, "accuracy_mean": figures["accuracy"], "accuracy_std": 0.0,
            "accuracy_per_seed": [figures["accuracy"]], "macro_f1_mean": figures["macro_f1"], "loyalty_mean": figures["loyalty"],
            "params": figures["params"], "params_without_embeddings": figures["params_without_embeddings"],
            "compression": teacher["params"] / figures["params"], "latency_ms": latency[PEER],
            "training_seconds_mean": figures["training_seconds"], "settings": figures["settings"],
            **{f"speedup_{k}": teacher["latency_ms"][k] / v for k, v in latency[PEER].items()},
        })
    for row in rows:
        row["measured_in"] = "this run"
    previous = RESULTS / f"classification{suffix}.json"
    kept = json.loads(previous.read_text())["rows"] if set(families) != set(FAMILIES) and previous.is_file() else []
    # rows written before families existed are BiLSTM rows; every kept row says it came from an earlier run
    kept = [{"family": "bilstm", "distilled": r["name"] != "gold only", **r, "measured_in": "an earlier run (kept)"} for r in kept]
    kept = [r for r in kept if r["family"] not in families]
    old = json.loads(previous.read_text()) if kept else {}
    result = {
        "mode": name,
        "command": "python benchmarks/classification.py" + (" --quick" if args.quick else ""),
        "teacher_name": teacher_name,
        "teacher": teacher,
        "data": first["data"],
        "seeds": mode["seeds"],
        "threads": torch.get_num_threads(),
        "training_note": (f"after the base step, every other run (student rows, curve, augmented annotation, smaller labeled "
                          f"set) ran in {mode['workers']} worker processes of one thread each, side by side: training seconds are "
                          f"for one thread sharing the CPU; latency is timed afterwards in this process with "
                          f"{torch.get_num_threads()} threads and nothing else running")
        if mode["workers"] > 1 else "everything ran in this one process",
        "families_run": families,
        "rows": kept + rows,
        "transfer_size_curve": curve or old.get("transfer_size_curve", []),
        "small_labeled": small or old.get("small_labeled"),
        "annotation": annotation or old.get("annotation"),
        "gpu": {"available": torch.cuda.is_available(),
                "note": "no GPU on this machine; GPU figures need a run where one is lent" if not torch.cuda.is_available() else ""},
    }
    if kept:
        result["kept_note"] = (f"rows of {', '.join(sorted({r['family'] for r in kept}))} are kept from an earlier run of this script "
                               f"(their latency and speed-ups were timed in that run's process, against the teacher timed there: "
                               f"{old['teacher']['latency_ms']['batch_32']:.1f} ms at batch 32, here {teacher['latency_ms']['batch_32']:.1f} ms)")
        result["teacher_latency_earlier_run_ms"] = old["teacher"]["latency_ms"]
    result["annotation_speedup_vs_pipeline"] = (result["annotation"] or {}).get("annotation_speedup_vs_pipeline")
    result["frontier"] = frontier(result)
    result["transformer_search"] = transformer_search()
    result["goals"] = goals(result)
    result["seconds_total"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    images = plots(result, RESULTS, suffix)
    previous.write_text(json.dumps(result, indent=2), encoding="utf-8")
    table = markdown(result, images)
    (RESULTS / f"classification{suffix}.md").write_text(table, encoding="utf-8")
    print(table)
    print(f"total {result['seconds_total']:.0f} s; wrote {previous}")


if __name__ == "__main__":
    main()
