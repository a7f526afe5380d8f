"""Epoch time of two concurrent runs sharing the machine, with the old default thread count and the new one.

The old default was torch's: every core the affinity mask allows, whatever a container's CPU quota says.
The new default (`xdistil.cpus.cpu_budget`) also follows the cgroup quota. Each case runs real `xdistil
distill` processes (one BiLSTM representation stage of one epoch, the default student) on a shared,
already annotated base folder, and reads the epoch's seconds from the stage checkpoint each one wrote:

- alone: one run, the whole machine (the reference);
- two runs, no limit: both default to every core (old and new alike) - the case the run's warning is for;
- two runs, each pinned to its own core (`taskset`-style affinity): torch and xdistil both take one thread;
- two runs, each in a cgroup allowed one CPU's time: old default (threads = cores) against the new one.

The quota cases need a writable cgroup (v1 `cpu` or v2) and are skipped, and said so, where there is none.
Timings need the machine to themselves: run nothing else meanwhile. Prints a table and writes
benchmarks/results/threads.json.

    python benchmarks/threads.py [--texts 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.classification import link_shared  # noqa: E402
from benchmarks.memory import build_teacher, labeled, write_lines  # noqa: E402

HERE = Path(__file__).parent
WORK = HERE / "cache" / "threads"
RESULTS = HERE / "results" / "threads.json"
STAGE = {"name": "representation", "losses": {"representation": 1.0}, "epochs": 1, "monitor": "dev_loss"}


def base_values(folder: Path, texts: int) -> dict:
    """A base run (teacher built from a config, synthetic text) whose teacher and annotation every case shares."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(400)]
    data = folder / "data"
    if not (data / "transfer.txt").is_file():
        data.mkdir(parents=True, exist_ok=True)
        build_teacher(data / "teacher", words)
        labeled(data / "train.csv", 400, words, rng)
        labeled(data / "dev.csv", 200, words, rng)
        labeled(data / "test.csv", 200, words, rng)
        write_lines(data / "transfer.txt", texts, words, rng)
    return {
        "out": str(folder / "base"), "seed": 1, "device": "cpu",
        "data": {"train": str(data / "train.csv"), "dev": str(data / "dev.csv"), "test": str(data / "test.csv"),
                 "transfer": [str(data / "transfer.txt")]},
        "teacher": {"model": str(data / "teacher"), "epochs": 1, "max_length": 32},
        "evaluation": {"baseline": False, "latency_batch_sizes": []},
    }


def _cgroup_root() -> tuple[Path, str] | None:
    """A writable cgroup hierarchy with the cpu controller: (folder, 'v1' or 'v2'), or None."""
    candidates = [(Path("/sys/fs/cgroup/cpu"), "v1"), (Path("/sys/fs/cgroup/cpu,cpuacct"), "v1"), (Path("/sys/fs/cgroup"), "v2")]
    for root, kind in candidates:
        marker = root / ("cpu.cfs_quota_us" if kind == "v1" else "cgroup.controllers")
        if marker.is_file() and (kind == "v1" or "cpu" in marker.read_text()) and os.access(root, os.W_OK):
            return root, kind
    return None


def make_cgroup(name: str, cpus: float) -> Path | None:
    """A cgroup allowed `cpus` CPUs' time, or None where cgroups cannot be written here."""
    found = _cgroup_root()
    if found is None:
        return None
    root, kind = found
    folder = root / name
    try:
        folder.mkdir(exist_ok=True)
        period = 100_000
        if kind == "v1":
            (folder / "cpu.cfs_period_us").write_text(str(period))
            (folder / "cpu.cfs_quota_us").write_text(str(int(cpus * period)))
        else:
            (folder / "cpu.max").write_text(f"{int(cpus * period)} {period}")
    except OSError:
        return None
    return folder


def start(values: dict, folder: Path, cgroup: Path | None, cpu: int | None) -> subprocess.Popen:
    """`xdistil distill` on its own folder (teacher and cache linked from the base), optionally in a cgroup or on one CPU."""
    shutil.rmtree(folder, ignore_errors=True)
    link_shared(Path(values["out"]), folder, ("teacher", "cache"))
    config = folder.parent / f"{folder.name}.yaml"
    config.write_text(yaml.safe_dump({**values, "out": str(folder)}))
    command = [sys.executable, "-m", "xdistil", "distill", str(config)]
    if cgroup is not None:  # the shell joins the cgroup, then becomes xdistil: torch starts inside it
        command = ["sh", "-c", f'echo $$ > "{cgroup / "cgroup.procs"}" && exec "$@"', "sh", *command]
    env = {**os.environ, "XDISTIL_QUIET": "1"}
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None)


def finish(process: subprocess.Popen, folder: Path) -> dict:
    _, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"xdistil distill failed in {folder}:\n{err}")
    history = json.loads(next((folder / "checkpoints" / "student").glob("stage-*.json")).read_text())["history"]
    reason = next((line for line in err.splitlines() if line.startswith("threads:")), "threads: ? (no log line)")
    return {"epoch_seconds": history["epochs"][0]["seconds"], "threads": reason.split()[1], "log": reason,
            "warned_oversubscribed": "oversubscribed" in err}


def case(name: str, values: dict, runs: list[dict]) -> dict:
    """Start every run of a case at once; each run: {'threads': int|None, 'cgroup': Path|None, 'cpu': int|None}."""
    folders = [WORK / name.replace(" ", "_").replace(",", "") / f"run{i}" for i in range(len(runs))]
    started = time.perf_counter()
    processes = []
    for run, folder in zip(runs, folders):
        settings = {**values, "distill": {"stages": [STAGE]}}
        if run.get("threads"):
            settings["threads"] = run["threads"]
        processes.append(start(settings, folder, run.get("cgroup"), run.get("cpu")))
    results = [finish(p, f) for p, f in zip(processes, folders)]
    row = {"case": name, "wall_seconds": round(time.perf_counter() - started, 1), "runs": results,
           "mean_epoch_seconds": round(sum(r["epoch_seconds"] for r in results) / len(results), 2)}
    print(f"{name:58s} epoch {row['mean_epoch_seconds']:8.2f} s  threads {','.join(r['threads'] for r in results)}"
          f"  warned {','.join('yes' if r['warned_oversubscribed'] else 'no' for r in results)}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=20_000, help="transfer texts (one representation epoch over them)")
    args = parser.parse_args()
    from xdistil.config import build_config
    from xdistil.cpus import affinity
    from xdistil.pipeline import Run

    cores = sorted(affinity())
    values = base_values(WORK, args.texts)
    Run(build_config(values, "threads base")).run(until="annotate")  # cached after the first time
    quota = [make_cgroup(f"xdistil-bench-{i}", 1.0) for i in range(2)]
    rows = [case("alone, default", values, [{}])]
    if len(cores) >= 2:
        rows.append(case("two runs, no limit, default (old = new: every core)", values, [{}, {}]))
        rows.append(case("two runs, no limit, threads: 1 each", values, [{"threads": 1}, {"threads": 1}]))
        rows.append(case("two runs, one core each (affinity), default", values, [{"cpu": cores[0]}, {"cpu": cores[1]}]))
        if all(quota):
            rows.append(case(f"two runs, 1-CPU quota each, old default (threads: {len(cores)})", values,
                             [{"threads": len(cores), "cgroup": q} for q in quota]))
            rows.append(case("two runs, 1-CPU quota each, new default", values, [{"cgroup": q} for q in quota]))
    for q in quota:
        if q is not None:
            q.rmdir()
    alone = rows[0]["mean_epoch_seconds"]
    for row in rows:
        row["vs_alone"] = round(row["mean_epoch_seconds"] / alone, 2)
    result = {"texts": args.texts, "cores": len(cores), "quota_cases": bool(all(quota)) if len(cores) >= 2 else False, "rows": rows}
    if not result["quota_cases"]:
        result["note"] = "no writable cgroup with the cpu controller here: the quota cases were not run"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
