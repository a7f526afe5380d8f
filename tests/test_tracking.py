"""Experiment trackers (`tracking: [tensorboard, mlflow]`, through accelerate's): the finished run's every epoch and
its test figures, equal to the run's own history and metrics.json; nothing is written without the setting."""

from __future__ import annotations

import pytest

from conftest import tiny_run_config
from xdistil.evaluation.tracking import tag

FAST = {"evaluation": {"baseline": True, "baseline_epochs": 2, "latency_batch_sizes": [1], "latency_repeats": 2}}


@pytest.fixture(scope="module")
def tracked(tiny_teacher, sentiment_files, tmp_path_factory):
    from xdistil.pipeline import Run

    out = tmp_path_factory.mktemp("tracked") / "run"
    metrics = Run(tiny_run_config(tiny_teacher, sentiment_files, out, tracking=["tensorboard", "mlflow"], **FAST)).run()
    return out, metrics


def _epochs(metrics: dict) -> dict[str, list[tuple[int, float]]]:
    """What the trackers must hold: 'model/stage/figure' -> [(epoch, value)] from metrics.json's histories."""
    expected: dict[str, list[tuple[int, float]]] = {}
    for model, stages in metrics["stages"].items():
        for stage in stages:
            for epoch in stage["epochs"]:
                for figure, key in (("train_loss", "train_loss"), ("dev_loss", "dev_loss"), (f"dev_{stage['score_name']}", "dev_score")):
                    if epoch[key] is not None:
                        expected.setdefault(f"{model}/{tag(stage['name'])}/{figure}", []).append((epoch["epoch"], epoch[key]))
    return expected


def test_tensorboard_event_files_hold_every_epoch_and_the_test_figures(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, metrics = tracked
    events = EventAccumulator(str(out / "tracking" / "run")).Reload()
    expected = _epochs(metrics)
    assert {"teacher", "student", "baseline"} <= {key.split("/")[0] for key in expected}
    for key, points in expected.items():
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in logged] == [s for s, _ in points], key
        assert all(v == pytest.approx(p, rel=1e-6, abs=1e-7) for (_, v), (_, p) in zip(logged, points)), key
    assert events.Scalars("test/student/accuracy")[0].value == pytest.approx(metrics["student"]["accuracy"], rel=1e-6)
    assert events.Scalars("test/teacher/accuracy")[0].value == pytest.approx(metrics["teacher"]["accuracy"], rel=1e-6)


def test_an_mlflow_store_in_the_run_folder_holds_the_config_and_every_epoch(tracked):
    import os

    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

    out, metrics = tracked
    client = MlflowClient(tracking_uri=(out / "tracking" / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("run").experiment_id])
    assert run.data.params["distill.batch_size"] == "32" and run.data.params["teacher.model"] == metrics["run"]["teacher"]
    for key, points in _epochs(metrics).items():
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert [s for s, _ in logged] == [s for s, _ in points] and all(v == pytest.approx(p) for (_, v), (_, p) in zip(logged, points)), key
    assert run.data.metrics["test/student/accuracy"] == pytest.approx(metrics["student"]["accuracy"])


def test_tracking_is_off_by_default_and_an_uninstalled_tracker_is_refused_before_the_folder_is_touched(tiny_teacher, sentiment_files, tmp_path, monkeypatch):
    import accelerate.utils

    from xdistil.errors import XDistilError
    from xdistil.pipeline import Run

    config = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "plain", **FAST)
    assert config.tracking == []
    monkeypatch.setattr(accelerate.utils, "is_wandb_available", lambda: False)
    with pytest.raises(XDistilError, match=r"tracking: wandb is not installed \(pip install wandb\)"):
        Run(tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "wandb", tracking=["wandb"], **FAST))
    assert not (tmp_path / "wandb").exists()  # refused before the folder was touched
