"""Annotation throughput on this machine: one process, two processes (`accelerate launch`, gloo) and a
local Ray cluster (two actors), with the same teacher on the same texts.

The teacher is the classification benchmark's fine-tuned all-mpnet-base-v2 (run
`python benchmarks/classification.py` first); the texts are the first `--texts` of its transfer set,
with 200 train, 100 dev and 100 test texts. Each engine annotates into its own run folder with the
teacher copied in, so only annotation is timed. Figures per engine: the command's wall time and the
steady throughput between the moment every worker has finished its first chunk and the last chunk
(chunk files' modification times: start-up, model loading and Ray's start are left out). The caches
are compared with the one-process cache (max |logit| difference; they differ in the last bits when
the thread count differs). Thread budget: 2 threads for one process, 1 thread per process or actor.
A GPU part (the teacher in fp32 and bf16 on one GPU) runs only where a GPU is present; otherwise the
JSON says so. Writes benchmarks/results/scale.json.

    python benchmarks/scale.py [--texts 3000] [--chunk-size 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
RESULTS = HERE / "results" / "scale.json"
ENGINES = ("1 process", "2 processes (accelerate launch)", "ray (2 actors)")


def _write_inputs(work: Path, texts: int) -> dict[str, str]:
    """Train, dev, test and transfer files cut from the classification benchmark's corpus."""
    import csv

    from xdistil.config import load_config
    from xdistil.pipeline import Run

    corpus = Run(load_config(HERE / "cache" / "classification" / "full" / "base" / "config.yaml")).read_data().corpus
    names = corpus.label_names
    files = {}
    for part, split, n in (("train", corpus.train, 200), ("dev", corpus.dev, 100), ("test", corpus.test, 100)):
        files[part] = str(work / f"{part}.csv")
        with open(files[part], "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows((t, names[label]) for t, label in list(zip(split.texts, split.labels))[:n])
    transfer = [t.replace("\n", " ") for _, t in zip(range(texts), corpus.transfer)]
    files["transfer"] = str(work / "transfer.txt")
    Path(files["transfer"]).write_text("\n".join(transfer) + "\n", encoding="utf-8")
    return files


def _config(work: Path, name: str, files: dict[str, str], chunk_size: int, threads: int, **transfer) -> Path:
    teacher = HERE / "cache" / "classification" / "full" / "base" / "teacher"
    values = {
        "out": str(work / name), "seed": 1, "device": "cpu", "threads": threads,
        "data": {"train": files["train"], "dev": files["dev"], "test": files["test"], "transfer": [files["transfer"]]},
        "teacher": {"model": str(teacher), "finetune": False, "max_length": 128},
        "transfer": {"chunk_size": chunk_size, "batch_size": 64, **transfer},
    }
    import yaml

    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def _steady_rate(cache: Path, workers: int) -> float:
    """Texts per second between every worker's first finished chunk and the last chunk."""
    from xdistil.transfer.cache import TransferCache

    done = TransferCache(cache)
    stamps = sorted((p.stat().st_mtime, len(done.chunk_rows(int(p.stem.split("-")[1])))) for p in cache.glob("chunk-*.safetensors"))
    later = stamps[workers:]
    return sum(rows for _, rows in later) / (stamps[-1][0] - stamps[workers - 1][0])


def _max_logit_difference(a: Path, b: Path) -> float:
    from xdistil.transfer.cache import TransferCache

    first, second = TransferCache(a), TransferCache(b)
    return max(float(abs(first.chunk(i).logits - second.chunk(i).logits).max()) for i in range(first.num_chunks()))


def _gpu_part(texts: list[str]) -> dict:
    """The teacher's annotation throughput on one GPU in fp32 and bf16 (same texts), where a GPU is present."""
    import torch

    if not torch.cuda.is_available():
        return {"measured": False, "why": "no GPU on this machine (this task was not lent one); single-GPU fp32/bf16 throughput not measured"}
    from benchmarks.classification import texts_per_second
    from xdistil.teacher.models import load_tokenizer
    from xdistil.teacher.precision import at_precision
    from transformers import AutoModelForSequenceClassification

    folder = str(HERE / "cache" / "classification" / "full" / "base" / "teacher")
    model = AutoModelForSequenceClassification.from_pretrained(folder).cuda().eval()
    tokenizer = load_tokenizer(folder)
    return {"measured": True, "device": torch.cuda.get_device_name(0),
            "fp32_texts_per_s": round(texts_per_second(model, tokenizer, texts), 1),
            "bf16_texts_per_s": round(texts_per_second(at_precision(model, "bf16"), tokenizer, texts), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument("--chunk-size", type=int, default=200)
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    work = HERE / "cache" / "scale"
    work.mkdir(parents=True, exist_ok=True)
    files = _write_inputs(work, args.texts)
    env = {**os.environ, "XDISTIL_QUIET": "1", "OMP_NUM_THREADS": "1"}
    xdistil = [sys.executable, "-m", "xdistil"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "xdistil"]
    plans = {
        ENGINES[0]: (xdistil, _config(work, "one", files, args.chunk_size, 2), 1),
        ENGINES[1]: (launch, _config(work, "two", files, args.chunk_size, 1), 2),
        ENGINES[2]: (xdistil, _config(work, "ray", files, args.chunk_size, 1, engine="ray",
                                      ray={"workers": 2, "num_cpus": 1, "window": 64}), 2),
    }
    results = {}
    for engine, (command, config, workers) in plans.items():
        out = Path(str(config)[: -len(".yaml")])
        shutil.rmtree(out, ignore_errors=True)
        prepared = subprocess.run([*xdistil, "finetune", str(config)], env=env, capture_output=True, text=True)  # copies the teacher in
        if prepared.returncode:
            sys.exit(prepared.stderr)
        started = time.perf_counter()
        done = subprocess.run([*command, "annotate", str(config)], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode:
            sys.exit(f"{engine}: {done.stderr[-3000:]}")
        rate = _steady_rate(out / "cache" / "transfer", workers)
        results[engine] = {"wall_s": round(wall, 1), "texts_per_s": round(rate, 1), "workers": workers}
        print(f"{engine}: {rate:.1f} texts/s steady, annotate command {wall:.0f} s", flush=True)
    one = work / "one" / "cache" / "transfer"
    for engine, name in zip(ENGINES[1:], ("two", "ray")):
        results[engine]["speedup_vs_1_process"] = round(results[engine]["texts_per_s"] / results[ENGINES[0]]["texts_per_s"], 2)
        results[engine]["max_logit_diff_vs_1_process"] = _max_logit_difference(one, work / name / "cache" / "transfer")
    import torch

    report = {
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU" if not torch.cuda.is_available()
        else torch.cuda.get_device_name(0),
        "teacher": "all-mpnet-base-v2 fine-tuned (benchmarks/classification.py base run), fp32, max_length 128",
        "texts": args.texts + 200, "chunk_size": args.chunk_size,
        "threads": "1 process: 2 threads; 2 processes and Ray: 1 thread each",
        "engines": results,
        "gpu": _gpu_part(Path(files["transfer"]).read_text(encoding="utf-8").splitlines()),
        "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
