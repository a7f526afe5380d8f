"""The training loop: early stopping keeps the best epoch, and a non-finite loss stops the stage cleanly."""

from __future__ import annotations

import copy
import math

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


def _reference_training(model, groups, batches, epochs, settings):
    """What fit must do, written out: the optimizer, a linear warm-up then cosine (or restarting cosine)
    schedule per step, gradient clipping - no early stop (every epoch improves)."""
    optimizer = (torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam)(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    total = len(batches) * epochs
    warmup = int(settings.warmup_ratio * total)
    period = settings.restart_epochs * len(batches)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        span = period or (total - warmup)
        return 0.5 * (1 + math.cos(math.pi * ((step - warmup) % span) / span))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    params = [p for g in groups for p in g["params"]]
    for _ in range(epochs):
        for batch in batches:
            loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
            optimizer.step()
            scheduler.step()


@pytest.mark.parametrize("optimizer,warmup,restart,decay,clip", [
    ("adam", 0.0, 0, 0.0, 5.0), ("adamw", 0.25, 0, 0.1, 5.0), ("adamw", 0.0, 1, 0.0, 0.05), ("adam", 0.5, 1, 0.01, 0.5),
])
def test_the_loop_is_the_optimizer_schedule_and_clipping_it_claims(optimizer, warmup, restart, decay, clip):
    settings = LoopSettings(name="s", epochs=3, lr=0.05, patience=9, optimizer=optimizer, warmup_ratio=warmup,
                            restart_epochs=restart, weight_decay=decay, grad_clip=clip)
    model, batches = _toy()
    reference = copy.deepcopy(model)
    losses = iter([0.9, 0.8, 0.7])  # every epoch is better: the last epoch's weights are kept
    history = fit(model, list(model.parameters()), lambda b: torch.nn.functional.mse_loss(model(b["x"]), b["y"]), batches,
                  lambda: (next(losses), None), settings, Accelerator(cpu=True))
    _reference_training(reference, [{"params": list(reference.parameters())}], batches, 3, settings)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=1e-6)
    assert [e.epoch for e in history.epochs] == [1, 2, 3] and history.best_epoch == 3 and not history.stopped_early
    assert [e.dev_loss for e in history.epochs] == [0.9, 0.8, 0.7] and all(e.dev_score is None for e in history.epochs)


def test_parameter_groups_keep_their_own_learning_rates():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    frozen_by_rate = {k: v.clone() for k, v in model[0].state_dict().items()}
    moved = {k: v.clone() for k, v in model[1].state_dict().items()}
    batches = [{"x": torch.randn(8, 3), "y": torch.randn(8, 1)} for _ in range(3)]
    groups = [{"params": list(model[0].parameters()), "lr": 0.0}, {"params": list(model[1].parameters()), "lr": 0.1}]
    settings = LoopSettings(name="s", epochs=1, lr=0.5, patience=1, optimizer="adamw", weight_decay=0.1)
    fit(model, groups, lambda b: torch.nn.functional.mse_loss(model(b["x"]), b["y"]), batches, lambda: (0.1, None), settings,
        Accelerator(cpu=True))
    assert all(torch.equal(model[0].state_dict()[k], v) for k, v in frozen_by_rate.items())  # lr 0: not even decayed
    assert all(not torch.equal(model[1].state_dict()[k], v) for k, v in moved.items())


def test_extra_modules_train_and_are_restored_to_the_best_epoch_with_the_model():
    model, batches = _toy()
    projection = torch.nn.Linear(1, 1)
    start = {k: v.clone() for k, v in projection.state_dict().items()}
    snapshots, modes = [], []

    def compute_loss(batch):
        modes.append((model.training, projection.training))
        return torch.nn.functional.mse_loss(projection(model(batch["x"])), batch["y"])

    def evaluate():
        modes.append((model.training, projection.training))
        snapshots.append(({k: v.clone() for k, v in model.state_dict().items()}, {k: v.clone() for k, v in projection.state_dict().items()}))
        return [0.3, 0.1, 0.2][len(snapshots) - 1], None

    settings = LoopSettings(name="s", epochs=3, lr=0.05, patience=5)
    history = fit(model, list(model.parameters()), compute_loss, batches, evaluate, settings, Accelerator(cpu=True), (projection,))
    assert history.best_epoch == 2
    best_model, best_projection = snapshots[1]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best_model.items())
    assert all(torch.equal(projection.state_dict()[k], v) for k, v in best_projection.items())
    assert any(not torch.equal(best_projection[k], v) for k, v in start.items())  # it trained
    assert set(modes) == {(True, True), (False, False)}  # training mode while training, eval mode while evaluating
    assert not model.training and not projection.training


def test_monitoring_the_dev_score_keeps_the_best_score_and_breaks_ties_by_loss():
    model, batches = _toy()
    figures = [(0.5, 0.70), (0.9, 0.80), (0.4, 0.80), (0.1, 0.75)]  # epoch 3 ties epoch 2's score with a lower loss
    snapshots = []

    def evaluate():
        snapshots.append(model.weight.detach().clone())
        return figures[len(snapshots) - 1]

    settings = LoopSettings(name="s", epochs=4, lr=0.05, patience=1, monitor="dev_score", score_name="f1")
    history = fit(model, list(model.parameters()), lambda b: torch.nn.functional.mse_loss(model(b["x"]), b["y"]), batches,
                  evaluate, settings, Accelerator(cpu=True))
    assert history.best_epoch == 3 and history.stopped_early and len(history.epochs) == 4
    assert torch.equal(model.weight, snapshots[2])
    assert history.score_name == "f1" and [e.dev_score for e in history.epochs] == [0.70, 0.80, 0.80, 0.75]


def test_patience_counts_epochs_without_improvement():
    model, batches = _toy()
    losses = iter([0.5, 0.6, 0.7, 0.4, 0.3])
    settings = LoopSettings(name="s", epochs=5, lr=0.05, patience=3)
    history = fit(model, list(model.parameters()), lambda b: torch.nn.functional.mse_loss(model(b["x"]), b["y"]), batches,
                  lambda: (next(losses), None), settings, Accelerator(cpu=True))
    assert len(history.epochs) == 5 and history.best_epoch == 5 and not history.stopped_early  # 2 stale epochs < patience 3


def test_the_recorded_train_loss_is_the_mean_over_the_epoch_and_the_sampler_sees_each_epoch():
    model, batches = _toy()
    seen = []

    class Batches(list):
        def set_epoch(self, epoch):
            seen.append(epoch)

    losses = []

    def compute_loss(batch):
        loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
        losses.append(loss.item())
        return loss

    settings = LoopSettings(name="s", epochs=2, lr=0.01, patience=5)
    history = fit(model, list(model.parameters()), compute_loss, Batches(batches), lambda: (0.5, 0.5), settings, Accelerator(cpu=True))
    assert seen == [1, 2]
    assert history.epochs[0].train_loss == pytest.approx(sum(losses[:4]) / 4)
    assert history.epochs[1].train_loss == pytest.approx(sum(losses[4:]) / 4)
    assert all(e.seconds >= 0 for e in history.epochs)


def test_a_data_loader_is_placed_by_accelerate_and_reshuffled_per_epoch():
    from torch.utils.data import DataLoader

    model, batches = _toy()
    rows = [{"x": b["x"][i], "y": b["y"][i]} for b in batches for i in range(8)]
    loader = DataLoader(rows, batch_size=8, shuffle=False)
    settings = LoopSettings(name="s", epochs=1, lr=0.05, patience=1)
    reference = copy.deepcopy(model)
    fit(model, list(model.parameters()), lambda b: torch.nn.functional.mse_loss(model(b["x"]), b["y"]), loader,
        lambda: (0.1, None), settings, Accelerator(cpu=True))
    _reference_training(reference, [{"params": list(reference.parameters())}], batches, 1, settings)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=1e-6)


def test_a_stage_history_survives_its_dict_form():
    from xdistil.loop import EpochRecord, StageHistory

    history = StageHistory("soft", [EpochRecord(1, 0.5, 0.4, 0.8, 1.5), EpochRecord(2, 0.3, 0.35, None, 1.2)], 2, True, "f1")
    again = StageHistory.from_dict(history.to_dict())
    assert again == history and again.score_name == "f1" and again.stopped_early and again.best_epoch == 2
    assert StageHistory.from_dict({k: v for k, v in history.to_dict().items() if k != "score_name"}).score_name == "accuracy"


def test_each_epoch_logs_one_line_with_its_figures(capsys):
    model, batches = _toy()
    losses = []

    def compute_loss(batch):
        losses.append(torch.nn.functional.mse_loss(model(batch["x"]), batch["y"]))
        return losses[-1]

    settings = LoopSettings(name="soft[output]", epochs=2, lr=0.01, patience=5, score_name="f1")
    fit(model, list(model.parameters()), compute_loss, batches, iter([(0.25, 0.5), (0.125, None)]).__next__, settings, Accelerator(cpu=True))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    first = sum(loss.item() for loss in losses[:4]) / 4
    second = sum(loss.item() for loss in losses[4:]) / 4
    assert lines[0] == f"soft[output] epoch 1: train loss {first:.4f}, dev loss 0.2500, dev f1 0.5000 (0s)"
    assert lines[1] == f"soft[output] epoch 2: train loss {second:.4f}, dev loss 0.1250 (0s)"
