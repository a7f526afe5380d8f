"""Peak memory of a whole run against the transfer set's size (10k, 100k, 1M short lines).

Annotation and distillation stream from disk, so peak RSS should barely grow with the transfer
set: the goal is at most 1.5x between 100k and 1M lines. Each size runs `xdistil run` in its own
process with a tiny BERT teacher built from a config (synthetic text; no downloads), and the
process's own peak RSS is read with os.wait4. Prints a table and writes
benchmarks/results/memory.json.

    python benchmarks/memory.py [--sizes 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).parent
WORK = HERE / "cache" / "memory"
RESULTS = HERE / "results" / "memory.json"
BOUND = 1.5


def build_teacher(folder: Path, words: list[str]) -> None:
    """A 2-layer, 64-wide BERT over a word-level vocabulary: it runs at the speed its size implies."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + words)}
    core = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    BertTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                      sep_token="[SEP]", mask_token="[MASK]").save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=64)
    BertModel(config).save_pretrained(str(folder))


def write_lines(path: Path, count: int, words: list[str], rng: random.Random) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(count):
            handle.write(" ".join(rng.choices(words, k=rng.randint(5, 14))) + "\n")


def labeled(path: Path, count: int, words: list[str], rng: random.Random) -> None:
    half = len(words) // 2
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("text,label\n")
        for i in range(count):
            side = words[:half] if i % 2 else words[half:]
            handle.write(" ".join(rng.choices(side, k=8)) + f",{'a' if i % 2 else 'b'}\n")


def run_size(size: int, teacher: Path, words: list[str]) -> dict:
    folder = WORK / f"n{size}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(size)
    transfer = folder / "transfer.txt"
    if not transfer.is_file():
        write_lines(transfer, size, words, rng)
    for name, count in (("train", 300), ("dev", 100), ("test", 200)):
        labeled(folder / f"{name}.csv", count, words, rng)
    config = {
        "out": str(folder / "run"), "seed": 1, "device": "cpu",
        "data": {"train": str(folder / "train.csv"), "dev": str(folder / "dev.csv"), "test": str(folder / "test.csv"),
                 "transfer": [str(transfer)]},
        "teacher": {"model": str(teacher), "epochs": 1, "max_length": 32},
        "transfer": {"chunk_size": 2048, "batch_size": 256},
        "student": {"emb_dim": 16, "hidden": 16},
        "distill": {"batch_size": 512, "stages": [{"name": "soft", "losses": {"soft": 1.0}, "epochs": 1}]},
        "evaluation": {"baseline": False, "latency_repeats": 3},
    }
    (folder / "run.yaml").write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "xdistil", "run", str(folder / "run.yaml"), "--overwrite"],
                               env={**os.environ, "XDISTIL_QUIET": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"run with {size} lines failed: {process.stderr.read().decode()[-2000:]}")
    return {"lines": size, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    words = [f"w{i}" for i in range(3000)]
    teacher = WORK / "teacher"
    if not (teacher / "config.json").is_file():
        build_teacher(teacher, words)
    rows = []
    for size in args.sizes:
        row = run_size(size, teacher, words)
        rows.append(row)
        print(f"{row['lines']:>9,} lines: peak RSS {row['peak_rss_mb']:8.1f} MB, {row['seconds']:7.1f} s", flush=True)
    result: dict = {"benchmark": "memory", "rows": rows, "bound": BOUND}
    by_size = {r["lines"]: r["peak_rss_mb"] for r in rows}
    if 100_000 in by_size and 1_000_000 in by_size:
        ratio = by_size[1_000_000] / by_size[100_000]
        result.update({"ratio_1m_vs_100k": round(ratio, 3), "bound_holds": ratio <= BOUND})
        print(f"peak RSS 1M / 100k = {ratio:.2f} (goal <= {BOUND}): {'holds' if ratio <= BOUND else 'MISSED'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
