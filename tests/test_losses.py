"""Each distillation loss computes what its docstring says, and masks keep padding out."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from xdistil.distill.losses import GoldLoss, HardLoss, RepresentationLoss, SoftLoss
from xdistil.student.base import StudentOutput
from xdistil.errors import XDistilError
from xdistil.text import IGNORE


def out(logits, rep=None):
    return StudentOutput(torch.as_tensor(logits, dtype=torch.float32), rep if rep is not None else torch.zeros(1))


def test_hard_loss_uses_the_teacher_argmax():
    student = out([[2.0, 0.0], [0.0, 1.0]])
    batch = {"teacher_logits": torch.tensor([[0.1, 0.9], [5.0, 1.0]])}
    expected = F.cross_entropy(student.logits, torch.tensor([1, 0]))
    assert torch.isclose(HardLoss()(student, batch), expected)


def test_soft_mse_and_kl_with_temperature():
    student = out([[1.0, 2.0, 3.0]])
    teacher = torch.tensor([[3.0, 2.0, 1.0]])
    assert torch.isclose(SoftLoss("mse")(student, {"teacher_logits": teacher}), torch.tensor(8.0 / 3.0))
    t = 2.0
    p = torch.softmax(teacher / t, -1)
    kl = (p * (p.log() - torch.log_softmax(student.logits / t, -1))).sum() * t * t
    assert torch.isclose(SoftLoss("kl", t)(student, {"teacher_logits": teacher}), kl, atol=1e-6)
    assert float(SoftLoss("kl", t)(out([[3.0, 2.0, 1.0]]), {"teacher_logits": teacher})) < 1e-6


def test_representation_loss_projects_only_when_widths_differ():
    same = RepresentationLoss(4, 4, "mse")
    assert isinstance(same.projection, torch.nn.Identity)
    rep = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert float(same(out([[0.0]], rep), {"teacher_representation": rep})) == 0.0
    cosine = RepresentationLoss(4, 4, "cosine")
    assert math.isclose(float(cosine(out([[0.0]], rep), {"teacher_representation": -rep})), 2.0, rel_tol=1e-6)
    wide = RepresentationLoss(4, 6, "mse")
    assert isinstance(wide.projection, torch.nn.Linear) and wide.projection.out_features == 6
    loss = wide(out([[0.0]], rep), {"teacher_representation": torch.ones(1, 6)})
    loss.backward()
    assert wide.projection.weight.grad is not None


def test_gold_loss_ignores_missing_labels_and_is_zero_without_any():
    student = out([[2.0, 0.0], [0.0, 1.0], [9.0, -9.0]])
    labels = torch.tensor([0, IGNORE, IGNORE])
    expected = F.cross_entropy(student.logits[:1], torch.tensor([0]))
    assert torch.isclose(GoldLoss()(student, {"labels": labels}), expected)
    none = GoldLoss()(student, {"labels": torch.full((3,), IGNORE)})
    assert float(none) == 0.0 and not torch.isnan(none)


def test_masks_keep_padding_positions_out_of_token_losses():
    logits = torch.randn(2, 3, 4)
    teacher = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    garbage = teacher.clone()
    garbage[~mask] = 1e6  # padding positions hold nonsense that must not matter
    student = StudentOutput(logits, torch.zeros(1))
    masked = SoftLoss("mse")(student, {"teacher_logits": garbage}, mask)
    expected = F.mse_loss(logits[mask], teacher[mask])
    assert torch.isclose(masked, expected)


def test_a_registered_loss_is_a_stage_loss_by_its_name():
    from xdistil.config import build_config
    from xdistil.distill.losses import LOSSES, DistillLoss, LossContext, LossSettings, build_loss, register_loss

    class MarginSettings(LossSettings):
        margin: float = 1.0

    @register_loss("margin_test")
    class MarginLoss(DistillLoss):
        """Hinge on the teacher's label margin (a test-only loss with a setting of its own)."""

        settings_class = MarginSettings

        def __init__(self, margin: float):
            super().__init__()
            self.margin = margin

        @classmethod
        def build(cls, context: LossContext) -> MarginLoss:
            return cls(context.own.margin)

    try:
        config = build_config({"distill": {"stages": [{"name": "m", "losses": {"margin_test": {"weight": 1.0, "margin": 2.5}}}]}})
        settings = config.distill.loss_settings()["margin_test"]
        loss = build_loss("margin_test", LossContext(student_dim=4, teacher_dim=4, settings=config.distill), settings)
        assert isinstance(loss, MarginLoss) and loss.margin == 2.5
        with pytest.raises(XDistilError, match="loss 'margin_test': margin: Input should be a valid number"):
            build_config({"distill": {"stages": [{"name": "m", "losses": {"margin_test": {"margin": "wide"}}}]}})
        assert isinstance(build_loss("soft", LossContext(4, 4, config.distill)), SoftLoss)
    finally:
        del LOSSES["margin_test"]
    with pytest.raises(XDistilError, match="unknown loss 'margin_test'; expected one of hard, soft, representation, layers, attention, gold"):
        build_config({"distill": {"stages": [{"name": "m", "losses": {"margin_test": 1.0}}]}})


def _states(batch: int, length: int, width: int, layers: int, seed: int) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, length, width, generator=generator) for _ in range(layers + 1))


def test_layer_matching_is_zero_for_the_same_states_and_ignores_padding():
    from xdistil.distill.losses import LayerMatchLoss, uniform_layer_map

    assert uniform_layer_map(3, 12) == {1: 4, 2: 8, 3: 12} and uniform_layer_map(2, 2) == {1: 1, 2: 2}
    student = _states(2, 5, 4, 2, seed=0)
    lengths = torch.tensor([5, 3])
    mask = (torch.arange(5)[None, :] < lengths[:, None]).long()
    teacher = tuple(s.clone() for s in student)
    for t in teacher:
        t[1, 3:] = 1e6  # the teacher's padding holds nonsense that must not matter
    loss = LayerMatchLoss({1: 1, 2: 2}, 4, 4)
    out = StudentOutput(torch.zeros(2, 2), torch.zeros(2, 4), student)
    batch = {"lengths": lengths, "teacher_hidden_states": teacher, "teacher_attention_mask": mask}
    assert float(loss(out, batch)) < 1e-10
    assert float(LayerMatchLoss({1: 2, 2: 1}, 4, 4)(out, batch)) > 0.1  # crossed layers differ


def test_layer_matching_projects_a_narrower_student_and_trains_the_projection():
    from xdistil.distill.losses import LayerMatchLoss

    student = tuple(s.requires_grad_() for s in _states(3, 6, 4, 2, seed=1))
    teacher = _states(3, 9, 8, 4, seed=2)  # another tokenizer: another length, width and depth
    loss = LayerMatchLoss({2: 4}, 4, 8)
    assert isinstance(loss.projections["2"], torch.nn.Linear)
    value = loss(
        StudentOutput(torch.zeros(3, 2), torch.zeros(3, 4), student),
        {"lengths": torch.tensor([6, 2, 4]), "teacher_hidden_states": teacher, "teacher_attention_mask": torch.ones(3, 9, dtype=torch.long)},
    )
    value.backward()
    assert float(value.detach()) > 0 and loss.projections["2"].weight.grad is not None and student[2].grad is not None
    assert student[1].grad is None or float(student[1].grad.abs().sum()) == 0.0  # unmapped layers get no signal


def test_attention_relations_are_zero_for_the_same_vectors_and_positive_otherwise():
    from xdistil.distill.relations import relation_divergence, relations

    generator = torch.Generator().manual_seed(3)
    vectors = torch.randn(2, 6, 8, generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    rel = relations(vectors, 2, mask)
    assert rel.shape == (2, 2, 6, 6)
    assert torch.allclose(rel.exp().sum(-1), torch.ones(2, 2, 6))  # distributions over positions
    assert float(rel[1, :, :, 3:].exp().max()) == 0.0  # padding positions are never attended to
    assert float(relation_divergence(vectors, vectors.clone(), 2, mask)) < 1e-6
    garbage = vectors.clone()
    garbage[1, 3:] = 1e4  # the padding of one side holds nonsense that must not matter
    assert float(relation_divergence(vectors, garbage, 2, mask)) < 1e-6
    other = torch.randn(2, 6, 12, generator=generator)  # another width (and head count): relations still compare
    assert float(relation_divergence(other, vectors, 4, mask)) > 0.01
    with pytest.raises(XDistilError, match="relation_heads: 5 does not divide a width of 8"):
        relations(vectors, 5, mask)


def test_the_attention_loss_reads_hooked_layers_and_refuses_different_tokens():
    from transformers import BertConfig, BertModel

    from xdistil.config import DistillConfig
    from xdistil.distill.losses import AttentionRelationLoss, LossContext, build_loss

    torch.manual_seed(0)
    teacher = BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32))
    student = BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16))
    loss = build_loss("attention", LossContext(8, 16, DistillConfig(), 1, 2, student, teacher), {"relation_heads": 2})
    assert isinstance(loss, AttentionRelationLoss) and not list(loss.parameters())  # the models' layers are not the loss's
    ids = torch.randint(0, 30, (2, 5))
    lengths = torch.tensor([5, 3])
    mask = (torch.arange(5)[None, :] < lengths[:, None]).long()
    student(input_ids=ids, attention_mask=mask)
    teacher(input_ids=ids, attention_mask=mask)
    value = loss(None, {"lengths": lengths})
    assert float(value.detach()) > 0 and value.requires_grad
    value.backward()
    assert student.encoder.layer[0].attention.self.query.weight.grad is not None
    teacher(input_ids=torch.randint(0, 30, (2, 7)))  # other tokens: other positions
    with pytest.raises(XDistilError, match="must read the teacher's tokens"):
        loss(None, {"lengths": lengths})
    loss.release()
    with pytest.raises(XDistilError, match=r"layers: \[1, 0\] is out of range"):
        build_loss("attention", LossContext(8, 16, DistillConfig(), 1, 2, student, teacher), {"layers": (1, 0)})


def test_losses_take_their_kind_and_temperature_from_their_own_settings():
    from xdistil.config import DistillConfig
    from xdistil.distill.losses import LossContext, build_loss

    torch.manual_seed(0)
    student, teacher = torch.randn(5, 3), torch.randn(5, 3)
    kl = build_loss("soft", LossContext(4, 4, DistillConfig()), {"kind": "kl", "temperature": 3.0})
    expected = F.kl_div(F.log_softmax(student / 3, -1), F.softmax(teacher / 3, -1), reduction="batchmean") * 9
    torch.testing.assert_close(kl(out(student), {"teacher_logits": teacher}), expected)
    cosine = build_loss("representation", LossContext(4, 4, DistillConfig()), {"kind": "cosine"})
    rep, target = torch.randn(5, 4), torch.randn(5, 4)
    got = cosine(StudentOutput(student, rep), {"teacher_representation": target})
    torch.testing.assert_close(got, (1 - F.cosine_similarity(cosine.projection(rep), target, dim=-1)).mean())
    mse = build_loss("representation", LossContext(4, 4, DistillConfig()))
    torch.testing.assert_close(mse(StudentOutput(student, rep), {"teacher_representation": target}), F.mse_loss(mse.projection(rep), target))


def test_unknown_losses_and_kinds_are_named_in_the_error():
    from xdistil.config import DistillConfig
    from xdistil.distill.losses import LOSSES, LossContext, build_loss

    with pytest.raises(ValueError, match=rf"^unknown loss 'nope'; expected one of {', '.join(LOSSES)}$"):
        build_loss("nope", LossContext(4, 4, DistillConfig()))
    with pytest.raises(ValueError, match=r"^soft loss kind must be 'mse' or 'kl', got 'l1'$"):
        SoftLoss("l1", 1.0)
    with pytest.raises(ValueError, match=r"^representation loss kind must be 'mse' or 'cosine', got 'l1'$"):
        RepresentationLoss(4, 4, "l1")


def test_per_word_losses_use_only_the_masked_in_positions():
    torch.manual_seed(0)
    logits, teacher = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    hard = HardLoss()(out(logits), {"teacher_logits": teacher}, mask)
    torch.testing.assert_close(hard, F.cross_entropy(logits[mask], teacher[mask].argmax(-1)))
    soft = SoftLoss("mse", 1.0)(out(logits), {"teacher_logits": teacher}, mask)
    torch.testing.assert_close(soft, F.mse_loss(logits[mask], teacher[mask]))


def test_todays_spelling_of_loss_settings_still_reads_and_a_loss_keeps_one_setting_across_stages():
    from xdistil.config import DistillConfig, build_config, config_to_dict
    from xdistil.distill.losses import SoftSettings

    legacy = DistillConfig(soft_loss="kl", temperature=3.0, representation_loss="cosine")
    new = DistillConfig(stages=[
        {"name": "representation", "losses": {"representation": {"kind": "cosine"}}, "monitor": "dev_loss", "epochs": 6},
        {"name": "soft", "losses": {"soft": {"kind": "kl", "temperature": 3.0}}, "train": ["output"], "unfreeze": "gradual", "epochs": 6},
        {"name": "gold", "losses": {"gold": 1.0}, "data": "labeled", "train": ["output"], "unfreeze": "gradual", "epochs": 4},
    ])
    assert legacy == new and legacy.loss_settings()["soft"] == SoftSettings(kind="kl", temperature=3.0)
    assert config_to_dict(build_config({}))["distill"]["stages"][0]["losses"] == {"representation": 1.0}  # defaults: bare weights
    saved = config_to_dict(build_config({"distill": {"temperature": 2.0, "soft_loss": "kl"}}))
    assert "temperature" not in saved["distill"] and build_config(saved).distill.loss_settings()["soft"].temperature == 2.0
    with pytest.raises(XDistilError, match="loss 'soft' has other settings in stage 'b'"):
        build_config({"distill": {"stages": [{"name": "a", "losses": {"soft": {"kind": "kl"}}}, {"name": "b", "losses": {"soft": 0.5}}]}})
    weights = build_config({"distill": {"stages": [{"name": "a", "losses": {"soft": {"weight": 0.25}, "gold": 2}}]}}).distill.stages[0]
    assert weights.weights() == {"soft": 0.25, "gold": 2.0}


@pytest.mark.parametrize("distill", [
    {"stages": [{"name": "l", "losses": {"layers": {"layer_map": {1: 9}}}}]},
    {"layer_map": {1: 9}, "stages": [{"name": "l", "losses": {"layers": 1.0}}]},  # today's spelling
])
def test_a_loss_setting_naming_a_missing_teacher_layer_is_refused_before_the_run(tiny_teacher, sentiment_files, tmp_path, distill):
    from conftest import tiny_run_config
    from xdistil.checks import check_before_running

    config = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "run", distill=distill,
                             student={"arch": "transformer", "encoder": "teacher", "layers": 1})
    with pytest.raises(XDistilError, match=r"layer_map: 1 -> 9: the teacher's hidden states are 0-2"):
        check_before_running(config)
    assert not (tmp_path / "run").exists()
