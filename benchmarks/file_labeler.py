"""Does a file of the teacher's logits reproduce the in-process student exactly? On the classification benchmark's
split, with repeated transfer texts kept (the default) and dropped (`data.transfer_duplicates: drop`).

For each case: an in-process run (all-MiniLM-L6-v2 fine-tuned on 1,000 labels, the quick base run's settings; with
repeats kept it is that run's own teacher and cache), a JSONL file of its teacher's logits over every text it labeled
(`benchmarks/common.write_label_file`), then the same student config labeled from that file (`teacher.source: file`,
the in-process teacher's folder as the reference encoder). Students: the BiLSTM (default shape, teacher_pca), soft
loss alone for 3 epochs, seed 1, one thread in both runs. Compared: the student weights (bit for bit), the transfer
caches' logits, and where the weights differ, the two students' test predictions.

    python benchmarks/file_labeler.py

Writes benchmarks/results/file_labeler.json and .md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.classification import base_of  # noqa: E402
from benchmarks.common import link_shared, quiet_transformers, write_label_file, write_results  # noqa: E402
from benchmarks.ensemble import student_values  # noqa: E402

CASES = {"repeats kept": "keep", "repeats dropped": "drop"}
WORK = HERE / "cache" / "file_labeler"


def run(values: dict, folder: Path, until: str = "evaluate"):
    from xdistil.config import build_config
    from xdistil.pipeline import Run

    return Run(build_config({**values, "out": str(folder)}, str(folder))).execute(until)


def compare(in_process: Path, from_file: Path, test_texts: list[str]) -> dict:
    """Bit-for-bit weights, the caches' logits row by row, and (when the weights differ) the test predictions."""
    import numpy as np
    from safetensors.torch import load_file

    from xdistil.student.io import load_student
    from xdistil.transfer.cache import TransferCache

    ours, theirs = (load_file(folder / "student" / "model.safetensors") for folder in (in_process, from_file))
    identical = ours.keys() == theirs.keys() and all(bool((ours[k] == theirs[k]).all()) for k in ours)
    a, b = (TransferCache(folder / "cache" / "transfer").load().logits for folder in (in_process, from_file))
    gap = np.abs(a - b).max(1) if a.shape == b.shape else None
    out = {"identical_weights": identical, "rows": len(a),
           "rows_with_other_logits": int((gap > 0).sum()) if gap is not None else None,
           "largest_logit_difference": float(gap.max()) if gap is not None else None}
    if not identical:
        x, y = (load_student(folder / "student").predict(test_texts) for folder in (in_process, from_file))
        out["test_predictions_agree"] = sum(p == q for p, q in zip(x, y)) / len(test_texts)
    return out


def measure_case(base: Path, values: dict, name: str, duplicates: str) -> dict:
    folder = WORK / name.replace(" ", "-")
    student = student_values(values, 1)
    student["data"]["transfer_duplicates"] = duplicates
    if duplicates == "keep":  # the quick base run's own teacher and transfer set
        link_shared(base, folder / "in-process", ("teacher", "cache"))
    run({**student, "threads": None}, folder / "in-process", "annotate")  # fine-tunes and labels with every core
    single = {**student, "threads": 1}
    made = run(single, folder / "in-process")
    labels = folder / "teacher-logits.jsonl"
    write_label_file(labels, made)
    external = json.loads(json.dumps(single))
    external["teacher"].update(source="file", labels=str(labels), model=str(folder / "in-process" / "teacher"))
    run(external, folder / "from-file")
    data = json.loads((folder / "in-process" / "data.json").read_text(encoding="utf-8"))
    return {"case": name, "transfer_duplicates": duplicates, "transfer_texts": data["sizes"]["transfer"],
            "repeats_dropped": data.get("transfer_repeats_dropped", 0), "label_file_rows": sum(1 for _ in labels.open(encoding="utf-8")),
            "student_test_accuracy": made.metrics["student"]["accuracy"],
            **compare(folder / "in-process", folder / "from-file", list(made.data.corpus.test.texts))}


def markdown(result: dict) -> str:
    lines = ["# A file of the teacher's logits against the teacher in process", "", f"`{result['command']}` - {result['setting']}", "",
             "| case | transfer texts | repeats dropped | label file rows | cache rows with other logits (largest gap) | student weights |",
             "|---|---:|---:|---:|---:|---|"]
    for c in result["cases"]:
        gap = f"{c['rows_with_other_logits']} ({c['largest_logit_difference']:.1e})" if c["rows_with_other_logits"] else "0"
        same = "identical" if c["identical_weights"] else f"differ; {100 * c['test_predictions_agree']:.1f}% of test predictions agree"
        lines.append(f"| {c['case']} | {c['transfer_texts']:,} | {c['repeats_dropped']:,} | {c['label_file_rows']:,} | {gap} | {same} |")
    return "\n".join(lines + [""])


def main() -> None:
    quiet_transformers()
    started = time.perf_counter()
    base, values = base_of("quick")
    cases = [measure_case(base, values, name, duplicates) for name, duplicates in CASES.items()]
    result = {"command": "python benchmarks/file_labeler.py",
              "setting": "all-MiniLM-L6-v2 fine-tuned on the classification benchmark's 1,000 labels; BiLSTM students, soft loss alone, "
                         "3 epochs, seed 1, one thread",
              "cases": cases, "seconds_total": round(time.perf_counter() - started, 1)}
    write_results("file_labeler", result, markdown(result))


if __name__ == "__main__":
    main()
