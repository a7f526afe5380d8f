"""Wall time of a first run on a few hundred labeled rows: `xdistil run --train --test --transfer --quick`.

The goal is under 3 minutes on 2 cores with the default teacher (all-MiniLM-L6-v2). The rows are real
rotten-tomatoes snippets (the built-in dataset's file, shuffled with seed 0): 300 labeled train rows
(xdistil carves dev from them), 500 test rows, 3,000 other snippets as unlabeled transfer text. The run
starts from an empty folder each time (`--overwrite`). Prints the figures and writes
benchmarks/results/quick_run.json.

    python benchmarks/quick_run.py [--train 300] [--transfer 3000]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
WORK = HERE / "cache" / "quick_run"
RESULTS = HERE / "results" / "quick_run.json"
GOAL_SECONDS = 180


def write_files(train: int, test: int, transfer: int) -> dict[str, Path]:
    from xdistil.data.builtin import rotten_tomatoes_files

    reviews, _ = rotten_tomatoes_files()
    with open(reviews, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    random.Random(0).shuffle(rows)
    WORK.mkdir(parents=True, exist_ok=True)
    files = {"train": WORK / "train.csv", "test": WORK / "test.csv", "transfer": WORK / "transfer.txt"}
    for name, part in (("train", rows[:train]), ("test", rows[train : train + test])):
        with open(files[name], "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows((row["text"], row["label"]) for row in part)
    files["transfer"].write_text("\n".join(row["text"] for row in rows[train + test : train + test + transfer]) + "\n", encoding="utf-8")
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--transfer", type=int, default=3000)
    args = parser.parse_args()
    files = write_files(args.train, args.test, args.transfer)
    out = WORK / "run"
    command = [sys.executable, "-m", "xdistil", "run", "--train", str(files["train"]), "--test", str(files["test"]),
               "--transfer", str(files["transfer"]), "--quick", "--out", str(out), "--overwrite"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"the quick run failed:\n{result.stderr}")
    metrics = json.loads((out / "metrics.json").read_text())
    row = {
        "command": "xdistil run --train train.csv --test test.csv --transfer transfer.txt --quick",
        "labeled_rows": args.train, "test_rows": args.test, "transfer_texts": args.transfer,
        "teacher": metrics["run"]["teacher"], "threads": metrics["run"]["threads"], "wall_seconds": round(seconds, 1),
        "goal_seconds": GOAL_SECONDS, "met": seconds < GOAL_SECONDS, "step_seconds": metrics["seconds"],
        "teacher_accuracy": metrics["teacher"]["accuracy"], "student_accuracy": metrics["student"]["accuracy"],
        "report_says_quick": "This is a quick run" in (out / "report.md").read_text(),
    }
    print(json.dumps(row, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
