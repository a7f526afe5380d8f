"""teacher.recipe: setfit - contrastive pairs tune the encoder body, then the ordinary fine-tune; the default recipe's
saved teachers keep their fingerprint."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForSequenceClassification

from conftest import tiny_run_config
from xdistil.config import TeacherConfig
from xdistil.pipeline import Run
from xdistil.teacher.contrastive import centroid_eval, contrastive_tune, sample_pairs
from xdistil.teacher.heads import HEAD_FILE, PooledHeadClassifier, load_teacher_model
from xdistil.teacher.inference import pad_teacher
from xdistil.teacher.precision import at_precision
from xdistil.transfer.labelers import TeacherSource
from xdistil.teacher.models import load_classifier, load_tokenizer
from xdistil.text import tokenize


def test_each_example_gets_one_partner_of_its_label_and_one_of_another_per_pass():
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    pairs = sample_pairs(labels, iterations=3, seed=7)
    assert len(pairs) == 3 * 2 * len(labels)
    assert pairs == sample_pairs(labels, iterations=3, seed=7) and pairs != sample_pairs(labels, iterations=3, seed=8)
    for a, b, target in pairs:
        assert a != b and (labels[a] == labels[b]) == (target == 1.0)
    assert Counter((a, t) for a, _, t in pairs) == {(i, t): 3 for i in range(len(labels)) for t in (0.0, 1.0)}


def test_a_label_with_one_example_gets_no_positive_pair_and_one_label_no_negative():
    assert sorted(t for a, _, t in sample_pairs([0, 1, 1], 1, 0) if a == 0) == [0.0]
    assert {t for _, _, t in sample_pairs([4, 4, 4], 2, 0)} == {1.0}


def test_the_pairs_pull_one_labels_texts_together_and_leave_the_head_alone(tiny_teacher, sentiment_files, tmp_path):
    config = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "r")
    corpus = Run(config).read_data().corpus
    settings = TeacherConfig(model=str(tiny_teacher), recipe="setfit", max_length=32, pooling="mean",
                             pairs={"iterations": 4, "epochs": 3, "lr": 3e-3, "batch_size": 16})
    tokenizer = load_tokenizer(settings.model)
    torch.manual_seed(0)
    model = load_classifier(settings.model, corpus.label_names)
    head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("classifier")}
    body = {k: v.clone() for k, v in model.base_model.state_dict().items()}

    def separation() -> float:  # dev: mean cosine to texts of one's own label minus to texts of other labels
        from xdistil.teacher.contrastive import embed_all

        ids, _ = tokenize(tokenizer, corpus.dev.texts, 32)
        vectors = embed_all(model.base_model, ids, tokenizer.pad_token_id, "mean")
        labels = torch.as_tensor(corpus.dev.labels)
        same = labels[:, None] == labels[None, :]
        cosine = vectors @ vectors.T
        return (cosine[same].mean() - cosine[~same].mean()).item()

    before = separation()
    history = contrastive_tune(model, tokenizer, corpus.train, corpus.dev, settings, Accelerator(cpu=True), seed=3)
    assert history.name == "teacher contrastive pairs" and history.score_name == "centroid accuracy"
    assert separation() > before + 0.1
    assert all(torch.equal(model.state_dict()[k], v) for k, v in head.items())
    assert any(not torch.equal(model.base_model.state_dict()[k], v) for k, v in body.items())
    ids, _ = tokenize(tokenizer, corpus.train.texts, 32)
    dev_ids, _ = tokenize(tokenizer, corpus.dev.texts, 32)
    _, accuracy = centroid_eval(model.base_model, ids, corpus.train.labels, dev_ids, corpus.dev.labels, [], tokenizer.pad_token_id, "mean")
    assert history.epochs[history.best_epoch - 1].dev_score == pytest.approx(accuracy)  # the best epoch's weights are kept


def test_a_setfit_teacher_trains_in_two_stages_with_a_pooled_head_and_is_its_own_cached_step(tiny_teacher, sentiment_files, tmp_path):
    pairs = {"iterations": 2, "epochs": 1, "lr": 1e-3}
    setfit = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "setfit", teacher__recipe="setfit", teacher__pairs=pairs,
                             teacher__epochs=2)
    plain = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "plain", teacher__epochs=2)
    tokenizer = load_tokenizer(str(tiny_teacher))
    data = Run(setfit).read_data()
    teacher = Run(setfit).finetune(data, tokenizer)
    assert [h.name for h in teacher.history] == ["teacher contrastive pairs", "teacher fine-tuning"]
    assert isinstance(teacher.model, PooledHeadClassifier) and (tmp_path / "setfit" / "teacher" / HEAD_FILE).is_file()
    other = Run(plain).finetune(data, tokenizer)
    assert [h.name for h in other.history] == ["teacher fine-tuning"] and other.fingerprint != teacher.fingerprint
    assert not isinstance(other.model, PooledHeadClassifier)
    again = Run(setfit).finetune(data, tokenizer)  # loaded, not trained again
    assert again.fingerprint == teacher.fingerprint and [h.to_dict() for h in again.history] == [h.to_dict() for h in teacher.history]
    ids, _ = tokenize(tokenizer, data.corpus.test.texts[:40], 32)
    assert torch.equal(logits_of(again.model, ids, tokenizer), logits_of(teacher.model, ids, tokenizer))

    made = Run(setfit).execute()  # the transfer set is labeled with the pooled head's logits, in process and in a worker
    cached = made.annotation.caches["test"].load()
    worker = TeacherSource(str(tmp_path / "setfit" / "teacher"), Run(setfit).task.teacher_class, "fp32").load()
    ids, _ = tokenize(tokenizer, data.corpus.test.texts, 32)
    assert np.allclose(cached.logits, logits_of(worker, ids, tokenizer).numpy(), atol=1e-5)
    assert 0.0 <= made.metrics["teacher"]["accuracy"] <= 1.0 and made.metrics["student"]["accuracy"] >= 0.0


def logits_of(model: torch.nn.Module, ids: list[list[int]], tokenizer) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        return model(**pad_teacher(ids, tokenizer.pad_token_id)).logits


def test_a_pooled_head_reads_the_mean_of_the_last_layer_and_drops_the_first_token_head(tiny_teacher, tmp_path):
    torch.manual_seed(0)
    inner = load_classifier(str(tiny_teacher), ["a", "b", "c"])
    encoder_params = sum(p.numel() for p in inner.base_model.parameters() if p is not None) - sum(p.numel() for p in inner.base_model.pooler.parameters())
    model = PooledHeadClassifier(inner, "mean").eval()
    assert sum(p.numel() for p in model.parameters()) == encoder_params + 32 * 3 + 3  # the encoder and its own head only
    tokenizer = load_tokenizer(str(tiny_teacher))
    ids, _ = tokenize(tokenizer, ["good film", "a very bad and dull film indeed", "fine"], 32)
    inputs = pad_teacher(ids, tokenizer.pad_token_id)
    with torch.inference_mode():
        out = model(**inputs, labels=torch.tensor([0, 1, 2]), output_hidden_states=True)
        hidden = model.base_model(**inputs).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    assert torch.allclose(out.logits, model.head((hidden * mask).sum(1) / mask.sum(1)), atol=1e-6)
    assert torch.isclose(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2])))
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    model.save_pretrained(str(tmp_path / "saved"))
    loaded = load_teacher_model(tmp_path / "saved", AutoModelForSequenceClassification).eval()
    assert isinstance(loaded, PooledHeadClassifier) and loaded.pooling == "mean"
    assert torch.equal(logits_of(loaded, ids, tokenizer), logits_of(model, ids, tokenizer))
    assert at_precision(loaded, "int8")(**inputs).logits.shape == (3, 3)  # int8 annotation quantises it like the others


def test_the_default_recipe_keeps_the_fingerprint_it_had_before_recipes():
    default, setfit = TeacherConfig(), TeacherConfig(recipe="setfit")
    assert "recipe" not in default.training_settings() and "pairs" not in default.training_settings()
    assert setfit.training_settings()["recipe"] == "setfit" and setfit.training_settings()["pairs"]["iterations"] == 5
    assert TeacherConfig(pairs={"iterations": 9}).training_settings() == default.training_settings()  # unused by finetune


def test_the_head_follows_the_recipe_unless_it_is_named():
    assert TeacherConfig().head_kind == "model" and TeacherConfig(recipe="setfit").head_kind == "pooled"
    assert TeacherConfig(head="pooled").head_kind == "pooled" and TeacherConfig(recipe="setfit", head="model").head_kind == "model"
    assert TeacherConfig(head="pooled").training_settings()["head"] == "pooled"
    assert TeacherConfig(head="model").training_settings() == TeacherConfig().training_settings()
    assert TeacherConfig(head="pooled", pooling="first").head_pooling == "first" and TeacherConfig(head="pooled").head_pooling == "mean"


@pytest.mark.parametrize("values, fragment", [
    ({"head": "pooled", "finetune": False}, "teacher.head pooled is a new head to fine-tune"),
    ({"recipe": "setfit", "finetune": False}, "teacher.recipe setfit fine-tunes the model"),
    ({"recipe": "setfit", "source": "function", "function": "m:f"}, "teacher.recipe setfit fine-tunes the model; teacher.source is function"),
])
def test_a_setfit_recipe_needs_a_model_to_fine_tune(values, fragment):
    with pytest.raises(ValueError, match=fragment):
        TeacherConfig(**values)
