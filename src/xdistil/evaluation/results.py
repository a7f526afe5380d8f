"""A finished run's results on disk: metrics.json, report.md with its plots, and the student's card."""

from __future__ import annotations

from xdistil.atomic import atomic_write_json
from xdistil.evaluation.card import write_card
from xdistil.evaluation.report import write_report
from xdistil.loop import StageHistory
from xdistil.progress import log
from xdistil.runfolder import RunFolder


def write_results(folder: RunFolder, metrics: dict, curves: dict[str, list[StageHistory]], config: dict, label_names: list[str],
                  notes: list[str]) -> dict:
    """Write the metrics, the report (a learning-curve plot per model in `curves`) and the card; returns `metrics`."""
    atomic_write_json(folder.metrics, metrics)
    report = write_report(folder.root, metrics, curves, notes)
    write_card(folder.student, metrics, config, label_names, notes)
    log(f"wrote {folder.metrics} and {report}")
    return metrics
