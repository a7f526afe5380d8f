"""Peak memory of a whole run against the transfer set's size (10k, 100k, 1M short lines), and
against one 50 MB line (in the transfer set of a run, and through `xdistil predict --input`).

Annotation and distillation stream from disk, so peak RSS should barely grow with the transfer
set: the goal is at most 1.5x between 100k and 1M lines. Texts are cut to `data.max_chars` before
any tokenizer sees them, so one 50 MB line should cost at most 1.5x the same run without it. Each
case runs `xdistil` in its own process with a tiny BERT teacher built from a config (synthetic
text; no downloads), and the process's own peak RSS is read with os.wait4. Prints a table and
writes benchmarks/results/memory.json.

    python benchmarks/memory.py [--sizes 10000 100000 1000000] [--long-line-mb 50]
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


def peak_rss(args: list[str], what: str) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one `xdistil` command in its own process."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "xdistil", *args], env={**os.environ, "XDISTIL_QUIET": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{what} failed: {process.stderr.read().decode()[-2000:]}")
    return round(usage.ru_maxrss / 1024, 1), round(time.perf_counter() - started, 1)


def run_size(size: int, teacher: Path, words: list[str], long_line_mb: int = 0) -> dict:
    folder = WORK / (f"n{size}" + (f"-line{long_line_mb}mb" if long_line_mb else ""))
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(size)
    transfer = folder / "transfer.txt"
    if not transfer.is_file():
        write_lines(transfer, size, words, rng)
        if long_line_mb:  # one line of `long_line_mb` MB in the middle of the file's words
            with open(transfer, "a", encoding="utf-8") as handle:
                word = " ".join(words[:200]) + " "
                handle.write(word * (long_line_mb * 2**20 // len(word)) + "\n")
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
    peak, seconds = peak_rss(["run", str(folder / "run.yaml"), "--overwrite"], f"run with {size} lines")
    row = {"lines": size, "long_line_mb": long_line_mb, "peak_rss_mb": peak, "seconds": seconds}
    if long_line_mb:  # the same lines through predict, with and without the long one
        short = folder / "predict_short.txt"
        short.write_text("".join(open(transfer, encoding="utf-8").readlines()[:size]), encoding="utf-8")
        for name, source in (("predict_peak_rss_mb", short), ("predict_long_line_peak_rss_mb", transfer)):
            row[name], _ = peak_rss(["predict", str(folder / "run" / "student"), "--input", str(source)], f"predict {source.name}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--long-line-mb", type=int, default=50, help="size of the one long line (0: skip that case)")
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
    if RESULTS.is_file():  # sizes not run this time keep their earlier figures, marked as such
        earlier = json.loads(RESULTS.read_text())
        ran = {r["lines"] for r in rows}
        rows += [{**r, "measured_in": "an earlier run"} for r in earlier.get("rows", []) if r["lines"] not in ran and not r.get("long_line_mb")]
        for key in ("ratio_1m_vs_100k", "bound_holds"):
            if key in earlier and not {100_000, 1_000_000} <= ran:
                result[key] = earlier[key]
    by_size = {r["lines"]: r["peak_rss_mb"] for r in rows if not r.get("long_line_mb")}
    if 100_000 in by_size and 1_000_000 in by_size:
        ratio = by_size[1_000_000] / by_size[100_000]
        result.update({"ratio_1m_vs_100k": round(ratio, 3), "bound_holds": ratio <= BOUND})
        print(f"peak RSS 1M / 100k = {ratio:.2f} (goal <= {BOUND}): {'holds' if ratio <= BOUND else 'MISSED'}")
    if args.long_line_mb:
        base = run_size(10_000, teacher, words, 0) if 10_000 not in by_size else next(r for r in rows if r["lines"] == 10_000)
        long_row = run_size(10_000, teacher, words, args.long_line_mb)
        rows.append(long_row)
        run_ratio = long_row["peak_rss_mb"] / base["peak_rss_mb"]
        predict_ratio = long_row["predict_long_line_peak_rss_mb"] / long_row["predict_peak_rss_mb"]
        result["long_line"] = {
            "mb": args.long_line_mb, "run_peak_rss_mb": long_row["peak_rss_mb"], "run_without_it_peak_rss_mb": base["peak_rss_mb"],
            "run_ratio": round(run_ratio, 3), "predict_peak_rss_mb": long_row["predict_long_line_peak_rss_mb"],
            "predict_without_it_peak_rss_mb": long_row["predict_peak_rss_mb"], "predict_ratio": round(predict_ratio, 3),
            "bound_holds": run_ratio <= BOUND and predict_ratio <= BOUND,
        }
        for what, ratio in (("run", run_ratio), ("predict", predict_ratio)):
            print(f"{what} with one {args.long_line_mb} MB line / without: {ratio:.2f} (goal <= {BOUND}): "
                  f"{'holds' if ratio <= BOUND else 'MISSED'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
