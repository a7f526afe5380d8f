"""How many CPUs this process really has (affinity and cgroup quota), and whether others are using them.

torch's default thread count follows the affinity mask but not a container's CPU quota: a process allowed
one CPU's time that runs two spinning threads is throttled. Two runs sharing two cores each with two threads
were measured 20x slower per epoch than one alone, so a run also says when its CPUs are already busy.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
PROC_STAT = Path("/proc/stat")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _ancestors(root: Path, relative: str) -> list[Path]:
    """The cgroup folder of this process and each folder above it, up to the mount root (a parent's quota applies too)."""
    folders, parts = [], [p for p in relative.strip("/").split("/") if p]
    for depth in range(len(parts), -1, -1):
        folder = root.joinpath(*parts[:depth])
        if folder.is_dir():
            folders.append(folder)
    return folders or [root]


def _quota_of(limit: str | None, period: str | None) -> float | None:
    try:
        quota, length = int(limit), int(period)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return quota / length if quota > 0 and length > 0 else None


def cpu_quota(root: Path = CGROUP, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPUs' worth of time the process's cgroups allow (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`), or None when unlimited."""
    found: list[float] = []
    for line in (_read(proc_cgroup) or "").splitlines():
        _, controllers, relative = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # cgroup v2: "0::/path"
            for folder in _ancestors(root, relative):
                limit, _, period = (_read(folder / "cpu.max") or "").partition(" ")
                value = _quota_of(limit, period)
                if value is not None:
                    found.append(value)
        elif "cpu" in controllers.split(","):  # cgroup v1: "N:cpu,cpuacct:/path"
            for mount in dict.fromkeys((root / controllers, root / "cpu", root / "cpu,cpuacct")):  # each folder read once
                for folder in _ancestors(mount, relative) if mount.is_dir() else []:
                    value = _quota_of(_read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us"))
                    if value is not None:
                        found.append(value)
    return min(found) if found else None


def affinity() -> set[int]:
    """The CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


@dataclass
class CpuBudget:
    """The CPUs a run may use: the thread count it takes by default, and why."""

    threads: int
    reason: str


def cpu_budget(root: Path = CGROUP, proc_cgroup: Path = PROC_CGROUP) -> CpuBudget:
    """min(affinity, quota) CPUs, at least one; a fractional quota rounds down (1.5 CPUs' time: one thread runs unthrottled)."""
    cores, total = len(affinity()), os.cpu_count() or 1
    quota = cpu_quota(root, proc_cgroup)
    threads, reasons = cores, [f"CPU affinity {cores} of {total} cores" if cores < total else f"{cores} cores"]
    if quota is not None and quota < cores:
        threads = max(1, math.floor(quota))
        reasons.append(f"CPU quota {quota:g} CPUs")
    return CpuBudget(threads, ", ".join(reasons))


def _cpu_times(cpus: set[int], stat: Path = PROC_STAT) -> tuple[int, int] | None:
    """(busy, total) jiffies summed over `cpus` from /proc/stat."""
    busy = total = 0
    for line in (_read(stat) or "").splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields[:8]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        busy, total = busy + sum(values) - idle, total + sum(values)
    return (busy, total) if total else None


def busy_cpus(seconds: float = 0.25, stat: Path = PROC_STAT) -> float | None:
    """How many of this process's CPUs other processes keep busy, sampled over `seconds` while this one sleeps."""
    cpus = affinity()
    before = _cpu_times(cpus, stat)
    time.sleep(seconds)
    after = _cpu_times(cpus, stat)
    if before is None or after is None or after[1] <= before[1]:
        return None
    return len(cpus) * (after[0] - before[0]) / (after[1] - before[1])


class ThreadWatch:
    """What a run says about its threads: the count and why, once; and a warning, once a run, when other processes
    keep its CPUs busy as a step begins (two runs started together are only seen once both train)."""

    def __init__(self, budget: CpuBudget, configured: int | None, launched: bool):
        self.budget, self.configured, self.launched = budget, configured, launched
        self.warned = launched  # several processes of one launch share the machine on purpose

    @classmethod
    def start(cls, budget: CpuBudget, configured: int | None, launched: bool, set_threads) -> ThreadWatch:
        """Set the thread count (the config's, else the budget's; several processes on one machine keep torch's own default)."""
        if configured or not launched:
            set_threads(configured or budget.threads)
        return cls(budget, configured, launched)

    def say(self, threads: int, log) -> None:
        """Log the thread count and why (the first step of every command calls it), then check for oversubscription."""
        log(f"threads: {threads} torch thread{'s' * (threads > 1)} ("
            + ("set by the config's threads" if self.configured else self.budget.reason) + ")")
        self.check(threads, log)

    def check(self, threads: int, log) -> None:
        """Warn once when other processes keep about `busy` CPUs busy beside this run's `threads` (sampled while it waits)."""
        if self.warned:
            return
        cores, busy = len(affinity()), busy_cpus()
        if busy is not None and busy + threads > cores + 0.5:
            self.warned = True
            log(f"warning: the machine is oversubscribed: other processes keep about {busy:.1f} of this run's {cores} CPUs busy "
                f"beside its {threads} torch threads; every step may be many times slower (benchmarks/threads.py: two runs "
                "sharing 2 cores at 2 threads each took 3.5x-17x as long per epoch as one alone, at 1 thread each 1.3x-1.4x) - "
                "wait for them, or give each run its own cores (taskset -c, or threads: in the config)")
