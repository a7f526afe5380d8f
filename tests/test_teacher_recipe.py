"""teacher.recipe: setfit - contrastive pairs tune the encoder body, then the ordinary fine-tune; the default recipe's
saved teachers keep their fingerprint."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from accelerate import Accelerator

from conftest import tiny_run_config
from xdistil.config import TeacherConfig
from xdistil.pipeline import Run
from xdistil.teacher.contrastive import centroid_eval, contrastive_tune, sample_pairs
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


def test_a_setfit_teacher_trains_in_two_stages_and_is_its_own_cached_step(tiny_teacher, sentiment_files, tmp_path):
    pairs = {"iterations": 2, "epochs": 1, "lr": 1e-3}
    setfit = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "setfit", teacher__recipe="setfit", teacher__pairs=pairs,
                             teacher__epochs=2)
    plain = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "plain", teacher__epochs=2)
    data = Run(setfit).read_data()
    teacher = Run(setfit).finetune(data, load_tokenizer(str(tiny_teacher)))
    assert [h.name for h in teacher.history] == ["teacher contrastive pairs", "teacher fine-tuning"]
    other = Run(plain).finetune(data, load_tokenizer(str(tiny_teacher)))
    assert [h.name for h in other.history] == ["teacher fine-tuning"] and other.fingerprint != teacher.fingerprint
    again = Run(setfit).finetune(data, load_tokenizer(str(tiny_teacher)))  # loaded, not trained again
    assert again.fingerprint == teacher.fingerprint and [h.to_dict() for h in again.history] == [h.to_dict() for h in teacher.history]


def test_the_default_recipe_keeps_the_fingerprint_it_had_before_recipes():
    default, setfit = TeacherConfig(), TeacherConfig(recipe="setfit")
    assert "recipe" not in default.training_settings() and "pairs" not in default.training_settings()
    assert setfit.training_settings()["recipe"] == "setfit" and setfit.training_settings()["pairs"]["iterations"] == 5
    assert TeacherConfig(pairs={"iterations": 9}).training_settings() == default.training_settings()  # unused by finetune


@pytest.mark.parametrize("values, fragment", [
    ({"recipe": "setfit", "finetune": False}, "teacher.recipe setfit fine-tunes the model"),
    ({"recipe": "setfit", "source": "function", "function": "m:f"}, "teacher.recipe setfit fine-tunes the model; teacher.source is function"),
])
def test_a_setfit_recipe_needs_a_model_to_fine_tune(values, fragment):
    with pytest.raises(ValueError, match=fragment):
        TeacherConfig(**values)
