"""Mutation testing of the core modules: how many deliberately broken versions of the code the fast tests catch.

mutmut (configured in pyproject.toml, `[tool.mutmut]`) mutates the loop, stages, losses, transfer
cache, alignment, readers and the student vocabulary, and runs, per mutant, only the selected fast
tests that call the mutated function. A mutant is killed when a test fails (a timeout counts as
killed: the broken code never finished); it survives when every test passes, and "no tests" means
no selected test reaches it (counted as not killed). Resumable: mutmut keeps finished results under
`mutants/`. Writes benchmarks/results/mutation.json: `modules.<name>.{killed, survived, no_tests,
score}` and the survivors' names (`mutmut show NAME` prints a survivor's diff).

    make mutation            # or: python benchmarks/mutation.py [--max-children 2] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutation.json"
GOAL = 0.80
# a mutant's name: the module, then x_<function> or xǁ<Class>ǁ<method>, then __mutmut_<n>
NAME = re.compile(r"^(?P<module>[\w.]+?)\.x(?:_|ǁ)(?P<function>.+)__mutmut_(?P<n>\d+)$")


def _results() -> dict[str, dict]:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=True)
    modules: dict[str, dict] = defaultdict(lambda: {"killed": 0, "survived": 0, "no_tests": 0, "other": 0, "survivors": []})
    for line in out.stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        match = NAME.match(name)
        if not match:
            continue
        module = modules[match["module"].removeprefix("src.")]
        if status in ("killed", "timeout"):
            module["killed"] += 1
        elif status == "survived":
            module["survived"] += 1
            module["survivors"].append(name)
        elif status == "no tests":
            module["no_tests"] += 1
            module["survivors"].append(name)
        else:
            module["other"] += 1
    for module in modules.values():
        judged = module["killed"] + module["survived"] + module["no_tests"]
        module["score"] = round(module["killed"] / judged, 3) if judged else None
    return dict(sorted(modules.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--report-only", action="store_true", help="summarise the finished results without running")
    parser.add_argument("mutants", nargs="*", help="re-run only these mutants (fnmatch patterns, e.g. 'xdistil.loop*'), after new tests")
    args = parser.parse_args()
    started = time.perf_counter()
    if not args.report_only:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # one thread per mutant worker
        subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children), *args.mutants], cwd=ROOT, check=True, env=env)
    modules = _results()
    report = {
        "tool": "mutmut 3.8.1 (pyproject.toml [tool.mutmut])",
        "goal": f"at least {GOAL:.0%} of mutants killed in each core module",
        "met": all(m["score"] is not None and m["score"] >= GOAL for m in modules.values()),
        "modules": modules,
        "seconds": None if args.report_only else round(time.perf_counter() - started),
        "command": "make mutation",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for name, module in modules.items():
        print(f"{name:32s} killed {module['killed']:4d}  survived {module['survived']:4d}  no tests {module['no_tests']:4d}  score {module['score']}")
    print(f"goal met: {report['met']}; written to {RESULTS}")


if __name__ == "__main__":
    main()
