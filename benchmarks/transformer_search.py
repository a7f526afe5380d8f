"""Dev search for the transformer student's schedule: variants of the 6-layer MiniLM student
distilled from the benchmark's all-mpnet-base-v2 teacher, chosen on the dev split.

Reuses the classification benchmark's base run folder (fine-tuned teacher and annotated transfer set,
made by `python benchmarks/classification.py`), so only the students train here. Each variant runs in
its own folder under benchmarks/cache/classification/full/search/ (a finished one is only loaded
again); the variants run side by side in one-thread worker processes. The JSON lists every variant's
dev accuracy (the selection criterion) and, for the record, its test accuracy.

    python benchmarks/transformer_search.py [--variants a,b] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

GOLD = {"name": "gold", "losses": {"gold": 1.0}, "data": "labeled", "epochs": 4, "lr": 3e-5}
SOFT = {"name": "soft", "losses": {"soft": 1.0}, "data": "transfer", "epochs": 3}  # the soft stage as the full benchmark ran it
SOFT_X4 = {**SOFT, "epochs": 4}  # the family default's soft stage, uncapped
# name -> (stages, distill overrides); the family's default schedule as the full benchmark ran it (soft 3 epochs, then
# gold) is read from that benchmark's own folder for the same seed: the "current" row
VARIANTS: dict[str, tuple[list[dict], dict]] = {
    "soft+representation": (
        [{"name": "soft+representation", "losses": {"soft": 1.0, "representation": 1.0}, "data": "transfer", "epochs": 3}, GOLD], {}),
    "soft lr 5e-5 x5": ([{"name": "soft", "losses": {"soft": 1.0}, "data": "transfer", "epochs": 5, "lr": 5e-5}, GOLD], {}),
    "representation then soft": (
        [{"name": "representation", "losses": {"representation": 1.0}, "data": "transfer", "epochs": 2, "monitor": "dev_loss"},
         SOFT, GOLD], {}),
    "soft kl t2": ([SOFT, GOLD], {"soft_loss": "kl", "temperature": 2.0}),
    # the family's default schedule uncapped (the benchmark ran it with the soft stage capped at 3 epochs)
    "soft x4": ([SOFT_X4, GOLD], {}),
    # linear probe, then fine-tune (LP-FT): one epoch trains only the new head at a 10x rate, so the pre-trained layers are
    # not pulled by a random head's gradients; then every layer as in "soft x4"
    "head then soft x4": (
        [{"name": "soft head", "losses": {"soft": 1.0}, "data": "transfer", "train": ["output"], "epochs": 1, "lr": 1e-3},
         SOFT_X4, GOLD], {}),
    # TinyBERT/MiniLM-style: the teacher's layers (mean-pooled, uniform map) and its last layer's self-attention relations
    # first, computed online per batch (the MiniLM student reads the same word pieces at the same positions as the MPNet
    # teacher on this data: every text's length agrees), then soft logits and gold as in the default
    "layers+attention then soft": (
        [{"name": "layers+attention", "losses": {"layers": 1.0, "attention": 1.0}, "data": "transfer", "epochs": 2,
          "monitor": "dev_loss"},
         SOFT, GOLD], {}),
    # the relations as a regulariser beside the soft logits, in one stage
    "soft+attention": ([{"name": "soft+attention", "losses": {"soft": 1.0, "attention": 1.0}, "data": "transfer", "epochs": 3},
                        GOLD], {}),
    # the family default with the narrower (PCA-factorised) word-piece table: fewer parameters, the same layers
    "soft x4 emb_dim 128": ([SOFT_X4, GOLD], {}),
    # twice the transfer texts: each text once more, augmented (masking, word swaps, n-gram sampling), labeled by the teacher
    "soft + augmentation x1": ([SOFT, GOLD], {}),
}
AUGMENTED = {"soft + augmentation x1": 1}  # variant -> transfer.augment.factor (annotated once into the shared folder)
STUDENT = {"soft x4 emb_dim 128": {"emb_dim": 128}}  # variant -> student settings beyond arch, encoder and layers


def dev_score(metrics: dict) -> float:
    """The dev accuracy of the student the run kept: the best epoch of its last stage."""
    last = metrics["stages"]["student"][-1]
    return max(epoch["dev_score"] for epoch in last["epochs"])


def variant_values(base_values: dict, stages: list[dict], overrides: dict, seed: int, layers: int, student: dict) -> dict:
    """The run config of one variant: the base run's data and teacher, a MiniLM student, these stages."""
    values = json.loads(json.dumps(base_values))
    values["student"] = {"arch": "transformer", "encoder": "minilm-l6", "layers": layers, **student}
    distill = {k: v for k, v in values["distill"].items() if k not in ("stages", "lr", "batch_size")}
    values["distill"] = {**distill, **overrides, "stages": stages, "seed": seed}
    values["evaluation"].update(baseline=False, latency_batch_sizes=[])
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    names = [n for n in args.variants.split(",") if n]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")

    from benchmarks.classification import prepare_token_cache
    from benchmarks.common import Job, link_shared, quiet_transformers, run_jobs, run_row, write_json

    quiet_transformers()
    from xdistil.progress import log

    work = HERE / "cache" / "classification" / "full"
    base = work / "base"
    if not (base / "cache" / "transfer" / "manifest.json").exists():
        sys.exit(f"{base} holds no annotated transfer set: run `python benchmarks/classification.py` first")
    from xdistil.config import config_to_dict, load_config

    base_values = config_to_dict(load_config(base / "config.yaml"))
    started = time.perf_counter()
    plan, first, then = [], [], []
    for name in names:
        stages, overrides = VARIANTS[name]
        folder = work / "search" / f"{args.layers}L-seed{args.seed}-{name.replace(' ', '_').replace('+', '_')}"
        values = variant_values(base_values, stages, overrides, args.seed, args.layers, STUDENT.get(name, {}))
        source = base
        if name in AUGMENTED:  # the same teacher and dev/test caches; the transfer set annotated with its augmented copies
            source = work / f"augmented-x{AUGMENTED[name]}"
            values["transfer"]["augment"]["factor"] = AUGMENTED[name]
            link_shared(base, source, ("teacher", "cache/dev", "cache/test"))
            annotate = {**json.loads(json.dumps(base_values)), "transfer": values["transfer"]}
            first.insert(0, Job("annotate", annotate, str(source)))
            then.append(Job("row", values, str(folder), str(source)))
        else:
            first.append(Job("row", values, str(folder), str(base)))
        plan.append((name, values, source, folder))
    rows_on_base = [(values, folder) for name, values, source, folder in plan if source == base]
    if rows_on_base:
        prepare_token_cache(*rows_on_base[0], base)
    run_jobs(first, then, args.workers)

    rows = []
    for name, values, source, folder in plan:
        metrics, _ = run_row(values, source, folder)
        rows.append({
            "variant": name, "stages": values["distill"]["stages"],
            "overrides": VARIANTS[name][1], "dev_accuracy": dev_score(metrics),
            "test_accuracy": metrics["student"]["accuracy"], "loyalty": metrics["student"]["loyalty"],
            "params": metrics["student"]["params"],
            "training_seconds": sum(e["seconds"] for s in metrics["stages"]["student"] for e in s["epochs"]),
        })
        log(f"{name}: dev {100 * rows[-1]['dev_accuracy']:.1f}%  test {100 * rows[-1]['test_accuracy']:.1f}%")
    current = work / "transformers" / f"{args.layers}L-seed{args.seed}" / "metrics.json"
    if current.exists():
        metrics = json.loads(current.read_text())
        rows.append({"variant": "current", "stages": "soft 3 epochs (capped), gold 4", "overrides": {},
                     "dev_accuracy": dev_score(metrics), "test_accuracy": metrics["student"]["accuracy"],
                     "loyalty": metrics["student"]["loyalty"], "from": str(current.relative_to(HERE.parent))})
    path = HERE / "results" / f"transformer_search_{args.layers}L_seed{args.seed}.json"
    previous = json.loads(path.read_text())["rows"] if path.exists() else []
    fresh = {row["variant"] for row in rows}  # "current" is re-read from the benchmark's folder when that exists, else kept
    rows += [row for row in previous if row["variant"] not in names and row["variant"] not in fresh]
    best = max((row for row in rows if "dev_accuracy" in row), key=lambda row: row["dev_accuracy"])  # unfinished rows have none
    result = {
        "command": "python " + " ".join(sys.argv), "student": f"all-MiniLM-L6-v2 cut to {args.layers} layers",
        "teacher": "all-mpnet-base-v2 fine-tuned on the benchmark's 1,000 labels (base run folder)",
        "seed": args.seed, "selected_on": "dev accuracy (test shown for the record only)",
        "rows": sorted(rows, key=lambda row: -row.get("dev_accuracy", 0)), "best_on_dev": best["variant"],
        "seconds": time.perf_counter() - started,
    }
    write_json(path, result, indent=1)
    log(f"best on dev: {best['variant']}; figures in {path}")


if __name__ == "__main__":
    main()
