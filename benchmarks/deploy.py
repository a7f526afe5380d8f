"""Deployment formats of a student side by side: PyTorch fp32 and int8, ONNX fp32 and int8.

For each student - the demo's BiLSTM (its run is made once into benchmarks/cache/deploy/demo, or
any run folder given with --run) and, where the classification benchmark has made it, the 6-layer
MiniLM transformer student - this measures, in one process on the same test texts: test accuracy,
size on disk, median latency at batch 1 and 32 from raw texts to probabilities (tokenization
included, as deployed), and agreement with the fp32 PyTorch student's predictions. Writes
benchmarks/results/deploy.json (deploy_quick.json with --quick: 500 test texts, fewer repeats).

    python benchmarks/deploy.py [--quick] [--run RUN_FOLDER ...] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
WORK = HERE / "cache" / "deploy"
TRANSFORMER_RUNS = [HERE / "cache" / "classification" / "full" / "transformers" / "6L-seed1",
                    HERE / "cache" / "classification" / "quick" / "transformers" / "3L-seed1"]


def demo_run() -> Path:
    """The demo's run folder (made on first use; a finished one is only loaded)."""
    from xdistil.pipeline import Run
    from xdistil.presets import demo_config

    folder = WORK / "demo"
    Run(demo_config(folder)).run(until="distill")
    return folder


def test_split(folder: Path) -> tuple[list[str], list[int], list[str]]:
    """The run's test texts, their label indices and the label names (read as the run read them)."""
    from xdistil.config import load_config
    from xdistil.data.corpus import load_corpus

    corpus = load_corpus(load_config(folder / "config.yaml").data)
    return list(corpus.test.texts), list(corpus.test.labels), corpus.label_names


def median_ms(predict, texts: list[str], size: int, repeats: int) -> float:
    """Median milliseconds of `predict` on `repeats` consecutive batches of `size` texts (2 warm-up calls)."""
    from benchmarks.common import median_ms as timed

    return timed(predict, [[texts[(b * size + i) % len(texts)] for i in range(size)] for b in range(repeats)], size)


def measure(name: str, folder: Path, mode: dict, threads: int) -> list[dict]:
    """The four formats of one student, measured in this process."""
    import numpy as np
    import torch

    from xdistil import load_student
    from xdistil.export.onnx import export_onnx
    from xdistil.export.quantize import quantize_student, state_size_bytes
    from xdistil.export.runtime import MODEL, OnnxStudent
    from xdistil.pipeline import Run
    from xdistil.config import load_config

    Run(load_config(folder / "config.yaml")).run(until="distill")  # (re)saves the student folder as this version writes it
    texts, labels, names = test_split(folder)
    texts, labels = texts[: mode["test_texts"]], np.asarray(labels[: mode["test_texts"]])
    student = load_student(folder / "student")
    exported = WORK / "exports" / name
    variants = [
        ("pytorch", "fp32", student, state_size_bytes(student.model)),
        ("pytorch", "int8", quantize_student(student), None),
    ]
    for precision in ("fp32", "int8"):
        out = exported / f"onnx-{precision}"
        export_onnx(folder / "student", out, int8=precision == "int8")
        variants.append(("onnx", precision, OnnxStudent(out, threads=threads), (out / MODEL).stat().st_size))
    reference = None
    pytorch_logits = student.logits(texts)
    rows = []
    for fmt, precision, model, size in variants:
        if size is None:
            size = state_size_bytes(model.model)
        probs = model.predict_proba(texts)
        predicted = probs.argmax(1)
        reference = predicted if reference is None else reference
        row = {
            "student": name, "format": fmt, "precision": precision, "test_texts": len(texts),
            "accuracy": float((predicted == labels).mean()), "size_mb": round(size / 2**20, 2),
            "latency_ms": {f"batch_{b}": median_ms(model.predict_proba, texts, b, r) for b, r in mode["repeats"].items()},
            "agreement": float((predicted == reference).mean()),
        }
        if fmt == "onnx":  # how far the exported model's logits are from the PyTorch student's, over these texts
            row["max_logit_difference_vs_pytorch_fp32"] = float(np.abs(model.logits(texts) - pytorch_logits).max())
        rows.append(row)
        print(f"{name:>12} {fmt:>7} {precision}: accuracy {100 * row['accuracy']:.1f}%, {row['size_mb']:.1f} MB, "
              f"batch 1 {row['latency_ms']['batch_1']:.1f} ms, batch 32 {row['latency_ms']['batch_32']:.1f} ms, "
              f"agreement {100 * row['agreement']:.1f}%", flush=True)
        torch.set_num_threads(threads)
    return rows


def goals(rows: list[dict]) -> list[dict]:
    """The issue's goals for the demo student's best int8 variant against PyTorch fp32."""
    demo = [r for r in rows if r["student"] == "demo bilstm"]
    if not demo:
        return []
    base = next(r for r in demo if r["format"] == "pytorch" and r["precision"] == "fp32")
    out = []
    for row in (r for r in demo if r["precision"] == "int8"):
        speed = {b: base["latency_ms"][b] / row["latency_ms"][b] for b in ("batch_1", "batch_32")}
        out.append({
            "variant": f"{row['format']} int8",
            "speedup_batch_1": round(speed["batch_1"], 2), "speedup_batch_32": round(speed["batch_32"], 2),
            "smaller": round(base["size_mb"] / row["size_mb"], 2), "accuracy_change_points": round(100 * (row["accuracy"] - base["accuracy"]), 2),
            "met": speed["batch_1"] >= 2 and speed["batch_32"] >= 2 and base["size_mb"] / row["size_mb"] >= 3
            and abs(row["accuracy"] - base["accuracy"]) <= 0.005,
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 test texts, fewer latency repeats, no transformer student")
    parser.add_argument("--run", type=Path, action="append", help="a finished run folder to measure (default: the demo's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    from benchmarks.common import quiet_transformers, write_json

    quiet_transformers()
    torch.set_num_threads(args.threads)
    mode = {"test_texts": 500, "repeats": {1: 30, 32: 8}} if args.quick else {"test_texts": 100_000, "repeats": {1: 100, 32: 30}}
    started = time.perf_counter()
    students = {f"run {p.name}": p for p in args.run} if args.run else {"demo bilstm": demo_run()}
    if not args.run and not args.quick:
        found = next((p for p in TRANSFORMER_RUNS if (p / "checkpoints" / "student").is_dir()), None)
        if found:
            students[f"transformer {found.name.split('-')[0]}"] = found
    rows = [row for name, folder in students.items() for row in measure(name, folder, mode, args.threads)]
    result = {
        "command": "python " + " ".join(sys.argv), "threads": args.threads, "device": "cpu",
        "latency": "median ms of predict_proba from raw texts (tokenization included), same texts, this process",
        "rows": rows, "goals": goals(rows), "seconds": round(time.perf_counter() - started, 1),
    }
    path = HERE / "results" / ("deploy_quick.json" if args.quick else "deploy.json")
    write_json(path, result, indent=1)
    for goal in result["goals"]:
        print(f"{goal['variant']}: {goal['speedup_batch_1']}x at batch 1, {goal['speedup_batch_32']}x at batch 32, "
              f"{goal['smaller']}x smaller, {goal['accuracy_change_points']:+.2f} points: {'met' if goal['met'] else 'MISSED'}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
