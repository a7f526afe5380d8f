"""A finished run in the experiment trackers its config names (`tracking: [tensorboard, mlflow, wandb]`), through
accelerate's trackers: the config as hyperparameters, every epoch of the teacher and of each stage (train loss, dev
loss, dev score) and the test figures. Written when the run finishes, from the histories the run keeps, so a run
resumed after a kill still logs every epoch exactly once, with the figures of metrics.json."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

from accelerate import Accelerator

from xdistil.loop import StageHistory
from xdistil.runfolder import RunFolder

MODELS = ("teacher", "student", "baseline_no_distillation")  # the parts of metrics.json whose test figures are logged


def flat(values: dict, prefix: str = "") -> dict[str, int | float | str | bool]:
    """Nested values as one level of 'a.b' keys; what is not a number, a string or a boolean becomes its string."""
    out: dict[str, int | float | str | bool] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def tag(name: str) -> str:
    """A stage name as every tracker takes it in a metric's name (MLflow's: letters, digits, _ - . / and spaces)."""
    return re.sub(r"[^\w\-. /]+", "-", name).strip("-")


def epoch_scalars(curves: dict[str, list[StageHistory]]) -> Iterator[tuple[int, dict[str, float]]]:
    """(epoch, {'model/stage/figure': value}) for every epoch of every history."""
    for model, histories in curves.items():
        for history in histories:
            for record in history.epochs:
                tag_ = f"{model}/{tag(history.name)}"
                values = {f"{tag_}/train_loss": record.train_loss, f"{tag_}/dev_loss": record.dev_loss}
                if record.dev_score is not None:
                    values[f"{tag_}/dev_{history.score_name}"] = record.dev_score
                yield record.epoch, values


def test_scalars(metrics: dict) -> dict[str, float]:
    """The test figures of the teacher, the student and the baseline that are single numbers, as 'test/model/figure'."""
    return {f"test/{model}/{tag(key)}": float(value) for model in MODELS for key, value in metrics.get(model, {}).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def track_run(accelerator: Accelerator, folder: RunFolder, config: dict, curves: dict[str, list[StageHistory]], metrics: dict) -> None:
    """Log the finished run to the accelerator's trackers (none configured: nothing). An MLflow store defaults to a file
    store in the run folder's `tracking/mlruns` unless MLFLOW_TRACKING_URI names one (a server, a database)."""
    if not accelerator.log_with:
        return
    kwargs: dict[str, Any] = {}
    if "mlflow" in [str(t) for t in accelerator.log_with] and "MLFLOW_TRACKING_URI" not in os.environ:
        import mlflow

        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps file stores, for local use, behind this switch
        mlflow.set_tracking_uri((folder.tracking / "mlruns").resolve().as_uri())
        kwargs["mlflow"] = {"run_name": folder.root.name}
    accelerator.init_trackers(folder.root.name, config=flat(config), init_kwargs=kwargs)
    try:
        for epoch, values in epoch_scalars(curves):
            accelerator.log(values, step=epoch)
        accelerator.log(test_scalars(metrics), step=0)
    finally:
        accelerator.end_training()
