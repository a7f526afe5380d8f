"""Annotation by an int8 teacher (dynamic quantisation of the all-mpnet-base-v2 teacher's Linear
layers, `transfer.teacher_precision: int8`) against the fp32 teacher and the transformers pipeline.

Uses the classification benchmark's base run (fine-tuned teacher, fp32 annotation). Measures in
one process on the same 1,000 transfer texts: texts per second of the pipeline, of xdistil's fp32
path and of its int8 path; then annotates the whole run with the int8 teacher (its own folder),
compares its logits with the fp32 annotation (argmax agreement, logit error), and trains the
default BiLSTM student (same seed) on each annotation. Writes benchmarks/results/annotation_int8.json
and the `annotation_int8` key of benchmarks/results/classification.json.

    python benchmarks/annotation_int8.py [--texts 1000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import numpy as np
    import torch
    from benchmarks.classification import DEFAULT, annotation_speed, stages_for, texts_per_second
    from benchmarks.common import Job, link_shared, quiet_transformers, run_jobs, run_row, write_json
    from xdistil.config import build_config, config_to_dict, load_config
    from xdistil.pipeline import Run
    from xdistil.progress import log
    from xdistil.teacher.precision import at_precision

    quiet_transformers()
    work = HERE / "cache" / "classification" / "full"
    base = work / "base"
    if not (base / "teacher").is_dir():
        sys.exit(f"{base}: no fine-tuned teacher; run `python benchmarks/classification.py` first")
    started = time.perf_counter()
    values = config_to_dict(load_config(base / "config.yaml"))
    base_run = Run(build_config(values, "base")).execute(until="annotate")
    texts = list(base_run.data.corpus.transfer)[: args.texts]

    log(f"int8: timing the pipeline, the fp32 path and the int8 path on {len(texts):,} texts ({torch.get_num_threads()} threads)")
    speed = annotation_speed(base_run, texts)  # pipeline and xdistil fp32, this process
    int8_model = at_precision(base_run.teacher.model.to("cpu").eval(), "int8")
    int8_speed = texts_per_second(int8_model, base_run.tokenizer, texts)

    int8_folder = work / "int8"
    int8_values = json.loads(json.dumps(values))
    int8_values["transfer"]["teacher_precision"] = "int8"
    link_shared(base, int8_folder, ("teacher",))
    annotate_started = time.perf_counter()
    int8_run = Run(build_config({**int8_values, "out": str(int8_folder)}, "int8")).execute(until="annotate")
    annotate_seconds = time.perf_counter() - annotate_started
    fp32_logits = np.concatenate([base_run.annotation.caches[p].load().logits for p in ("transfer", "dev", "test")])
    int8_logits = np.concatenate([int8_run.annotation.caches[p].load().logits for p in ("transfer", "dev", "test")])
    error = np.abs(fp32_logits - int8_logits)

    row_values = {}
    for name, source in (("fp32", base), ("int8", int8_folder)):
        v = json.loads(json.dumps(int8_values if name == "int8" else values))
        v["distill"]["stages"] = stages_for(DEFAULT, None)
        v["distill"]["seed"] = args.seed
        row_values[name] = (v, source, work / "int8_students" / f"{name}-seed{args.seed}")
    run_jobs([Job("row", v, str(o), str(s)) for v, s, o in row_values.values()], [], 2)
    accuracy = {name: run_row(v, s, o)[0]["student"]["accuracy"] for name, (v, s, o) in row_values.items()}

    result = {
        "command": "python " + " ".join(sys.argv), "teacher": "all-mpnet-base-v2 (fine-tuned, base run folder)",
        "texts_timed": len(texts), "threads": torch.get_num_threads(),
        "pipeline_texts_per_s": speed["pipeline_texts_per_s"], "fp32_texts_per_s": speed["xdistil_texts_per_s"],
        "int8_texts_per_s": int8_speed,
        "speedup_vs_pipeline": int8_speed / speed["pipeline_texts_per_s"], "speedup_vs_fp32": int8_speed / speed["xdistil_texts_per_s"],
        "annotated_texts": int(len(int8_logits)), "int8_annotation_seconds": round(annotate_seconds, 1),
        "argmax_agreement": float((fp32_logits.argmax(1) == int8_logits.argmax(1)).mean()),
        "logit_error_mean": float(error.mean()), "logit_error_max": float(error.max()),
        "student": f"BiLSTM, default schedule, seed {args.seed}", "student_accuracy": accuracy["int8"],
        "student_accuracy_fp32": accuracy["fp32"],
        "student_accuracy_change_points": 100 * (accuracy["int8"] - accuracy["fp32"]),
        "goals": {
            "speedup_vs_pipeline >= 4": int8_speed / speed["pipeline_texts_per_s"] >= 4,
            "student within 0.3 points of the fp32-annotated one": abs(accuracy["int8"] - accuracy["fp32"]) <= 0.003,
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(HERE / "results" / "annotation_int8.json", result, indent=1)
    classification = HERE / "results" / "classification.json"
    if classification.is_file():
        write_json(classification, {**json.loads(classification.read_text()), "annotation_int8": result})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
