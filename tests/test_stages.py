"""The schedule is data: gradual unfreezing expands top-down and only the named groups train."""

from __future__ import annotations

import pytest

from xdistil.config import DistillConfig, StageConfig, build_config
from xdistil.distill.stages import expand_stages, set_trainable
from xdistil.errors import XDistilError
from xdistil.student.bilstm import GROUPS, BiLSTMConfig, BiLSTMStudent


def test_paper_schedule_expands_into_nine_stages():
    stages = expand_stages(DistillConfig(), GROUPS)
    assert [s.name for s in stages] == [
        "representation",
        "soft[output]",
        "soft[output+dense]",
        "soft[output+dense+encoder]",
        "soft[output+dense+encoder+embedding]",
        "gold[output]",
        "gold[output+dense]",
        "gold[output+dense+encoder]",
        "gold[output+dense+encoder+embedding]",
    ]
    assert stages[0].groups == ("output", "dense", "encoder", "embedding")
    assert all(s.data == "transfer" for s in stages[:5]) and all(s.data == "labeled" for s in stages[5:])


def test_gradual_unfreezing_can_start_lower():
    config = DistillConfig(stages=[StageConfig(name="s", losses={"soft": 1}, train=["output", "dense"], unfreeze="gradual")])
    assert [s.groups for s in expand_stages(config, GROUPS)] == [
        ("output", "dense"),
        ("output", "dense", "encoder"),
        ("output", "dense", "encoder", "embedding"),
    ]


def test_only_the_stage_groups_receive_gradients():
    model = BiLSTMStudent(BiLSTMConfig(vocab_size=10, num_labels=2, emb_dim=4, hidden=3, dense_dim=5))
    for stage in expand_stages(DistillConfig(), GROUPS):
        trainable = set_trainable(model, stage.groups)
        names = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
        assert names == set(stage.groups)
        assert sum(p.numel() for p in trainable) == sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"distill": {"stages": [{"name": "x", "losses": {"magic": 1}}]}}, "unknown loss 'magic'"),
        ({"distill": {"stages": [{"name": "x", "losses": {"soft": 1}, "train": ["lstm"]}]}}, "unknown layer group 'lstm'"),
        ({"distill": {"lr": "fast"}}, "field 'distill.lr'"),
        ({"studnet": {}}, "unknown key 'studnet'"),
    ],
)
def test_bad_configs_are_one_line_errors(values, message):
    with pytest.raises(XDistilError) as err:
        build_config(values, "run.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_intermediate_layer_matching_is_refused_for_tagging_at_config_time():
    stages = [{"name": "layers", "losses": {"layers": 1.0}}]
    with pytest.raises(XDistilError, match="the 'layers' loss matches pooled text vectors: it is for classification"):
        build_config({"task": "tagging", "student": {"arch": "transformer"}, "distill": {"stages": stages}}, "run.yaml")
    assert build_config({"student": {"arch": "transformer"}, "distill": {"stages": stages}}).distill.stages[0].weights() == {"layers": 1.0}


def test_each_stage_carries_its_losses_and_its_own_or_the_default_settings():
    config = DistillConfig(epochs=7, lr=2e-3, monitor="dev_loss", stages=[
        StageConfig(name="rep", losses={"representation": 1.0}),
        StageConfig(name="soft", losses={"soft": 0.5, "hard": 0.5}, epochs=2, lr=1e-4, monitor="dev_score", train=["output"], unfreeze="gradual"),
    ])
    stages = expand_stages(config, GROUPS)
    first, rest = stages[0], stages[1:]
    assert (first.losses, first.epochs, first.lr, first.monitor, first.data) == ({"representation": 1.0}, 7, 2e-3, "dev_loss", "transfer")
    assert len(rest) == 4
    assert all((s.losses, s.epochs, s.lr, s.monitor) == ({"soft": 0.5, "hard": 0.5}, 2, 1e-4, "dev_score") for s in rest)
    assert all(s.losses is not config.stages[1].losses for s in rest)  # a copy: a stage cannot change the config


def test_the_baseline_is_one_gold_stage_training_every_group():
    from xdistil.distill.stages import gold_only

    stage = gold_only(GROUPS, 5, 3e-3)
    assert stage.name == "gold only (no distillation)"
    assert (stage.losses, stage.data, stage.groups, stage.epochs, stage.lr, stage.monitor) == (
        {"gold": 1.0}, "labeled", tuple(GROUPS), 5, 3e-3, "dev_score")
