"""The training loop: early stopping keeps the best epoch, and a non-finite loss stops the stage cleanly."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from xdistil.errors import XDistilError
from xdistil.loop import LoopSettings, fit


def _toy():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    batches = [{"x": torch.randn(8, 3), "y": torch.randn(8, 1)} for _ in range(4)]
    return model, batches


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_loss_stops_with_stage_and_step_and_restores_the_best_weights(bad):
    model, batches = _toy()
    calls = {"n": 0}
    snapshots = []

    def compute_loss(batch):
        calls["n"] += 1
        loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
        return loss * bad if calls["n"] == 7 else loss  # epoch 2, step 3

    def evaluate():
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return 1.0, None  # epoch 1 is the best (and only) evaluated epoch

    settings = LoopSettings(name="soft[output]", epochs=3, lr=0.1, patience=5)
    with pytest.raises(XDistilError, match=rf"stage 'soft\[output\]': loss became {bad} at epoch 2, step 3"):
        fit(model, list(model.parameters()), compute_loss, batches, evaluate, settings, Accelerator(cpu=True))
    # two optimizer steps of epoch 2 moved the weights; the stop puts back exactly those kept after epoch 1
    assert len(snapshots) == 1
    assert all(torch.equal(model.state_dict()[k], v) for k, v in snapshots[0].items())


def test_early_stopping_restores_the_best_epoch():
    model, batches = _toy()
    snapshots = []

    def evaluate():
        snapshots.append(model.weight.detach().clone())
        return [0.5, 0.2, 0.9, 0.8, 0.7][len(snapshots) - 1], None

    settings = LoopSettings(name="s", epochs=5, lr=0.05, patience=2)
    history = fit(
        model, list(model.parameters()), lambda b: torch.nn.functional.mse_loss(model(b["x"]), b["y"]),
        batches, evaluate, settings, Accelerator(cpu=True),
    )
    assert history.best_epoch == 2 and history.stopped_early and len(history.epochs) == 4
    assert torch.equal(model.weight, snapshots[1])
