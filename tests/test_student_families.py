"""Every student family honours the student interface; a new family plugs in by registering alone.

`BagStudent` below is a toy third family (mean of embeddings -> projection -> output) written
the way a user would add one: its own settings and model class, registered, and nothing else
edited. The conformance checks run on it and on every built-in family.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Literal

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from transformers import AutoModel, AutoTokenizer

from conftest import tiny_run_config
from xdistil import load_student
from xdistil.config import build_config
from xdistil.errors import XDistilError
from xdistil.pipeline import Run
from xdistil.student.base import Student, StudentContext, StudentOutput
from xdistil.student.inputs import batch_inputs, word_batch
from xdistil.student.io import save_student
from xdistil.student.registry import families, family, register
from xdistil.student.settings import StudentSettings
from xdistil.student.vocab import PrunedVocab
from xdistil.text import encode_words


class BagSettings(StudentSettings):
    arch: Literal["bag"] = "bag"
    emb_dim: int = 8

    def layer_groups(self) -> tuple[str, ...]:
        return ("output", "embedding")


@register
class BagStudent(Student):
    """Mean of word-piece embeddings (or each piece's own, per word), projected to the teacher's width."""

    arch = "bag"
    settings_class = BagSettings

    def __init__(self, vocab_size: int, num_labels: int, emb_dim: int, width: int, pad_id: int, tagging: bool):
        super().__init__()
        self.sizes = dict(vocab_size=vocab_size, num_labels=num_labels, emb_dim=emb_dim, width=width, pad_id=pad_id, tagging=tagging)
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_id)
        self.projection = nn.Linear(emb_dim, width)
        self.output = nn.Linear(width, num_labels)

    @classmethod
    def build(cls, settings: BagSettings, context: StudentContext) -> BagStudent:
        vocab = context.vocab
        return cls(len(vocab), context.num_labels, settings.emb_dim, context.teacher.config.hidden_size, vocab.pad_id, context.per_word)

    @classmethod
    def from_config(cls, config: dict) -> BagStudent:
        return cls(**config)

    def config(self) -> dict:
        return dict(self.sizes)

    @property
    def per_word(self) -> bool:
        return self.sizes["tagging"]

    @property
    def representation_dim(self) -> int:
        return self.sizes["width"]

    def layer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"output": [*self.output.parameters(), *self.projection.parameters()], "embedding": list(self.embedding.parameters())}

    def embedding_parameters(self) -> list[nn.Parameter]:
        return list(self.embedding.parameters())

    def forward(self, batch: dict[str, torch.Tensor]) -> StudentOutput:
        embedded = self.embedding(batch["input_ids"])
        if self.per_word:
            if "word_index" in batch:
                embedded = embedded.gather(1, batch["word_index"][:, :, None].expand(-1, -1, embedded.size(-1)))
            representation = self.projection(embedded)
        else:
            real = (torch.arange(embedded.size(1))[None, :] < batch["lengths"][:, None]).float()[:, :, None]
            representation = self.projection((embedded * real).sum(1) / real.sum(1))
        return StudentOutput(self.output(torch.tanh(representation)), representation)


ARCHS = ["bag", "bilstm", "pooled", "pooled-mean", "transformer", "transformer-narrow"]  # a family name, or family-variant


def arch_of(name: str) -> str:
    return name.split("-")[0]
TEXTS = ["great film", "dull boring plot and a weak script", "alice visited paris"]
LABELS = ["neg", "pos", "neutral"]


@pytest.fixture(scope="module")
def sizes(tiny_teacher) -> dict[str, dict]:
    """Small settings of each family (the transformer is cut from the tiny teacher: 1 of its 2 layers)."""
    transformer = {"encoder": str(tiny_teacher), "layers": 1}
    return {"bilstm": {"emb_dim": 8, "hidden": 6}, "bag": {"emb_dim": 8}, "pooled": {"emb_dim": 8}, "pooled-mean": {"emb_dim": 8, "pooling": "mean"},
            "transformer": transformer,
            "transformer-narrow": {**transformer, "emb_dim": 8}}


@pytest.fixture(scope="module")
def parts(tiny_teacher, sizes):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher))
    teacher = AutoModel.from_pretrained(str(tiny_teacher))
    ids = tokenizer(TEXTS + ["the movie story actor director scene it was with this its"])["input_ids"]
    vocab = PrunedVocab.from_token_ids(ids, len(tokenizer), tokenizer.all_special_ids, tokenizer.unk_token_id, tokenizer.pad_token_id)
    return tokenizer, teacher, vocab, sizes


def make(name: str, per_word: bool, parts) -> Student | None:
    """A fresh student of the family. Asked to tag, a texts-only family (the pooled one) must refuse in a ValueError:
    checked here, and None returned (the caller has nothing more to test)."""
    _, teacher, vocab, sizes = parts
    settings = family(arch_of(name)).settings_class.model_validate({"arch": arch_of(name), **sizes[name]})
    torch.manual_seed(0)
    context = StudentContext(vocab, len(LABELS), per_word, teacher)
    if per_word and settings.texts_only:
        with pytest.raises(ValueError, match="whole texts"):
            family(arch_of(name)).build(settings, context)
        return None
    return family(arch_of(name)).build(settings, context).eval()


def test_the_builtin_families_and_the_toy_one_are_registered():
    assert {arch_of(name) for name in ARCHS} <= set(families())
    with pytest.raises(ValueError, match="unknown student arch 'nope'; expected one of .*bilstm"):
        family("nope")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("per_word", [False, True], ids=["classification", "tagging"])
def test_forward_shapes(arch, per_word, parts):
    tokenizer, _, vocab, _ = parts
    model = make(arch, per_word, parts)
    if model is None:  # refused, as a texts-only family must
        return
    width, labels = model.representation_dim, len(LABELS)
    if per_word:
        sentences = encode_words(tokenizer, [t.split() for t in TEXTS])
        out = model(word_batch(sentences, vocab))
        words = max(len(s) for s in sentences)
        assert out.logits.shape == (3, words, labels) and out.representation.shape == (3, words, width)
    else:
        batch = batch_inputs([vocab.encode(ids) for ids in tokenizer(TEXTS)["input_ids"]], vocab.pad_id)
        out = model(batch)
        assert out.logits.shape == (3, labels) and out.representation.shape == (3, width)
    example = model(model.example_inputs(batch_size=4, length=5))
    assert example.logits.shape[0] == 4 and torch.isfinite(example.logits).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_layer_groups_cover_every_parameter_exactly_once_in_the_settings_order(arch, parts):
    model = make(arch, False, parts)
    groups = model.layer_groups()
    settings = family(arch_of(arch)).settings_class.model_validate({"arch": arch_of(arch), **parts[3][arch]})
    assert tuple(groups) == settings.layer_groups()
    grouped = [id(p) for params in groups.values() for p in params]
    assert len(grouped) == len(set(grouped)), "a parameter sits in two groups"
    assert set(grouped) == {id(p) for p in model.parameters()}, "a parameter sits in no group"
    embedding_ids = {id(p) for p in model.embedding_parameters()}
    assert embedding_ids and embedding_ids <= set(grouped)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("per_word", [False, True], ids=["classification", "tagging"])
def test_save_load_round_trip_predicts_identically(arch, per_word, parts, tmp_path):
    tokenizer, _, vocab, _ = parts
    model = make(arch, per_word, parts)
    if model is None:  # refused, as a texts-only family must
        return
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)  # far from any initialisation, so a lost weight shows
    save_student(tmp_path / "student", model, tokenizer, vocab, LABELS, max_length=32)
    loaded = load_student(tmp_path / "student")
    assert type(loaded.model) is type(model)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values()))
    with torch.no_grad():
        if per_word:
            words = [t.split() for t in TEXTS]
            direct = torch.softmax(model(word_batch(encode_words(tokenizer, words), vocab)).logits, -1).numpy()
            probs = loaded.predict_proba(words)
            for row, sentence in enumerate(words):
                assert np.allclose(probs[row], direct[row, : len(sentence)], atol=1e-6)
            tags = loaded.predict(TEXTS)
            assert [len(t) for t in tags] == [len(w) for w in words] and {x for t in tags for x in t} <= set(LABELS)
        else:
            batch = batch_inputs([vocab.encode(ids) for ids in tokenizer(TEXTS)["input_ids"]], vocab.pad_id)
            assert np.allclose(loaded.predict_proba(TEXTS), torch.softmax(model(batch).logits, -1).numpy(), atol=1e-6)
            assert loaded.predict(TEXTS) == [LABELS[i] for i in model(batch).logits.argmax(-1).tolist()]


def test_a_stage_naming_a_group_the_student_lacks_is_refused_at_config_time():
    stages = [{"name": "s", "losses": {"soft": 1.0}, "train": ["encoder"]}]
    with pytest.raises(XDistilError) as err:
        build_config({"student": {"arch": "bag"}, "distill": {"stages": stages}}, "run.yaml")
    message = str(err.value)
    assert "distill.stages[0] ('s'): unknown layer group 'encoder' for a bag student; expected one of output, embedding" in message
    assert "\n" not in message
    build_config({"student": {"arch": "bilstm"}, "distill": {"stages": stages}}, "run.yaml")  # the BiLSTM has an encoder
    with pytest.raises(XDistilError, match="unknown key 'student.hidden'"):
        build_config({"student": {"arch": "bag", "hidden": 3}}, "run.yaml")  # settings are the family's own


def test_the_cli_refuses_an_unknown_layer_group_before_any_work(tmp_path, tiny_teacher, sentiment_files):
    config = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "run").model_dump(mode="json")
    config["distill"]["stages"][1]["train"] = ["lstm"]
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "xdistil", "run", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: distill.stages[1] ('soft'): unknown layer group 'lstm' for a bilstm student; "
        "expected one of output, dense, encoder, embedding"
    ]
    assert not (tmp_path / "run").exists()


def test_a_registered_family_runs_the_whole_pipeline(tiny_teacher, sentiment_files, tmp_path):
    config = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "bag", student={"arch": "bag", "emb_dim": 16})
    config.distill.lr = 2e-2
    metrics = Run(config).run()
    assert metrics["run"]["student_arch"] == "bag"
    loaded = load_student(tmp_path / "bag" / "student")
    assert isinstance(loaded.model, BagStudent)
    assert metrics["student"]["params"] == sum(p.numel() for p in loaded.model.parameters())
    # the synthetic snippets are separable: the toy student learns them from the teacher's labels
    assert metrics["student"]["accuracy"] >= 0.8
    assert [h["name"] for h in metrics["stages"]["student"]] == ["representation", "soft[output]", "soft[output+embedding]", "gold"]
