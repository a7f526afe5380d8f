"""Pre-trained transformer students: cut from an encoder, exact when uncut, aligned when their tokenizer differs from the teacher's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from conftest import tiny_run_config
from xdistil import load_student
from xdistil.config import build_config
from xdistil.errors import XDistilError
from xdistil.pipeline import Run
from xdistil.student.base import StudentContext
from xdistil.student.inputs import batch_inputs
from xdistil.student.transformer import TransformerSettings, TransformerStudent, kept_layers
from xdistil.student.vocab import PrunedVocab
from xdistil.text import encode_words

TEXTS = ["a great and moving film", "dull boring plot", "alice visited paris with bob"]


def test_kept_layers_are_evenly_spaced_and_end_at_the_top():
    assert kept_layers(3, 6) == [1, 3, 5]
    assert kept_layers(4, 12) == [2, 5, 8, 11]
    assert kept_layers(6, 6) == [0, 1, 2, 3, 4, 5]
    assert kept_layers(1, 12) == [11]
    assert kept_layers([0, 2], 3) == [0, 2]
    with pytest.raises(XDistilError, match="7 layers asked for; the encoder has 6"):
        kept_layers(7, 6)
    with pytest.raises(XDistilError, match="layer 6 does not exist; the encoder has layers 0-5"):
        kept_layers([1, 6], 6)
    assert TransformerSettings(layers=[0, 3]).layer_groups() == ("output", "layer_1", "layer_0", "embedding")
    with pytest.raises(ValueError, match="distinct, ascending"):
        TransformerSettings(layers=[3, 1])


def test_a_student_keeping_every_layer_reproduces_the_encoder_over_its_pruned_vocabulary(other_encoder):
    tokenizer = AutoTokenizer.from_pretrained(str(other_encoder))
    encoder = AutoModel.from_pretrained(str(other_encoder)).eval()
    ids = tokenizer(TEXTS)["input_ids"]
    vocab = PrunedVocab.from_token_ids(ids, len(tokenizer), tokenizer.all_special_ids, tokenizer.unk_token_id, tokenizer.pad_token_id)
    assert len(vocab) < len(tokenizer)  # pruned, so student ids differ from the encoder's
    settings = TransformerSettings(encoder=str(other_encoder), layers=3)
    student = TransformerStudent.build(settings, StudentContext(vocab, 2, False, encoder)).eval()
    assert sum(p.numel() for p in student.embedding_parameters()) < sum(p.numel() for p in encoder.get_input_embeddings().parameters())
    with torch.no_grad():
        out = student(batch_inputs([vocab.encode(x) for x in ids], vocab.pad_id))
        padded = tokenizer(TEXTS, padding=True, return_tensors="pt")
        reference = encoder(**padded, output_hidden_states=True).hidden_states
    mask = padded["attention_mask"].bool()
    assert len(out.hidden_states) == len(reference) == 4
    for mine, theirs in zip(out.hidden_states, reference):
        assert torch.allclose(mine[mask], theirs[mask], atol=1e-5)
    # two of three layers: the kept layers' weights are the encoder's layers 1 and 2
    two = TransformerStudent.build(TransformerSettings(encoder=str(other_encoder), layers=2), StudentContext(vocab, 2, False, encoder))
    for mine, theirs in zip(two.encoder.encoder.layer, encoder.encoder.layer[1:]):
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))


def test_a_narrower_embedding_is_the_tables_pca_exact_at_full_rank_and_smaller_below_it(other_encoder):
    tokenizer = AutoTokenizer.from_pretrained(str(other_encoder))
    encoder = AutoModel.from_pretrained(str(other_encoder)).eval()
    ids = tokenizer(TEXTS)["input_ids"]
    vocab = PrunedVocab.from_token_ids(ids, len(tokenizer), tokenizer.all_special_ids, tokenizer.unk_token_id, tokenizer.pad_token_id)
    context = StudentContext(vocab, 2, False, encoder)
    batch = batch_inputs([vocab.encode(x) for x in ids], vocab.pad_id)
    padded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    mask = padded["attention_mask"].bool()
    with torch.no_grad():
        reference = encoder(**padded, output_hidden_states=True).hidden_states
        # the pruned table has fewer rows than the encoder's width (24), so a PCA to 24 keeps every direction
        assert len(vocab) < 24
        full = TransformerStudent.build(TransformerSettings(encoder=str(other_encoder), layers=3, emb_dim=24), context).eval()
        for mine, theirs in zip(full(batch).hidden_states, reference):
            assert torch.allclose(mine[mask], theirs[mask], atol=1e-5)
        narrow = TransformerStudent.build(TransformerSettings(encoder=str(other_encoder), layers=3, emb_dim=4), context).eval()
        plain = TransformerStudent.build(TransformerSettings(encoder=str(other_encoder), layers=3), context).eval()
        table = narrow.encoder.get_input_embeddings()
        assert table.weight.shape == (len(vocab), 4)
        assert sum(p.numel() for p in narrow.embedding_parameters()) == len(vocab) * 4 + 4 * 24 + 24
        assert sum(p.numel() for p in plain.embedding_parameters()) == len(vocab) * 24
        # rank 4 of the table: the best rank-4 approximation, so closer to the table than any other rank-4 start would be
        pruned = encoder.get_input_embeddings().weight[torch.as_tensor(vocab.teacher_ids)]
        approx = table(torch.arange(len(vocab)))
        error = (approx - pruned).norm()
        assert 0 < error < (pruned - pruned.mean(0)).norm()
        assert not torch.allclose(narrow(batch).hidden_states[-1][mask], reference[-1][mask], atol=1e-3)


def test_the_teacher_itself_can_be_cut_into_the_student(tiny_teacher):
    teacher = AutoModel.from_pretrained(str(tiny_teacher))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher))
    vocab = PrunedVocab.from_token_ids(tokenizer(TEXTS)["input_ids"], len(tokenizer), tokenizer.all_special_ids,
                                       tokenizer.unk_token_id, tokenizer.pad_token_id)
    student = TransformerStudent.build(TransformerSettings(encoder="teacher", layers=1), StudentContext(vocab, 3, True, teacher))
    assert torch.equal(student.encoder.encoder.layer[0].attention.self.query.weight, teacher.encoder.layer[1].attention.self.query.weight)
    assert TransformerStudent.tokenizer_source(TransformerSettings(encoder="teacher"), "some/teacher") == "some/teacher"


def test_words_split_differently_by_the_two_tokenizers_stay_aligned(tiny_teacher, other_encoder):
    words = [["alice", "visited", "paris"], ["frank", "met", "carol", "in", "london"]]
    teacher_side = encode_words(AutoTokenizer.from_pretrained(str(tiny_teacher)), words)
    student_side = encode_words(AutoTokenizer.from_pretrained(str(other_encoder)), words)
    assert [len(s) for s in teacher_side] == [len(s) for s in student_side] == [3, 5]
    assert [len(p) for p in teacher_side[0].pieces] == [1, 1, 1] and [len(p) for p in student_side[0].pieces] == [2, 1, 2]
    tokenizer = AutoTokenizer.from_pretrained(str(other_encoder))
    for sentence, encoded in zip(words, student_side):
        pieces = tokenizer.convert_ids_to_tokens(encoded.ids.tolist())
        first = [pieces[i] for i in encoded.starts]
        assert [w.startswith(f) for w, f in zip(sentence, first)] == [True] * len(sentence)


@pytest.mark.parametrize("task", ["classification", "tagging"])
def test_a_transformer_student_with_its_own_tokenizer_runs_end_to_end(task, tiny_teacher, other_encoder, sentiment_files, tagging_files, tmp_path):
    files = sentiment_files if task == "classification" else tagging_files
    overrides = {"teacher__epochs": 15, "teacher__lr": 3e-3, "teacher__patience": 15} if task == "tagging" else {}
    config = tiny_run_config(
        tiny_teacher, files, tmp_path / "run", task=task, student={"arch": "transformer", "encoder": str(other_encoder), "layers": 2},
        **overrides,
    )
    config.distill.lr = 2e-3
    made = Run(config).execute()
    metrics = made.metrics
    primary = metrics["primary_metric"]
    assert metrics["run"]["student_arch"] == "transformer"
    # the student read its own token ids, cached beside the teacher's, row for row and word for word
    teacher_rows, student_rows = made.annotation.caches["transfer"].load(), made.student_caches["transfer"].load()
    assert len(teacher_rows) == len(student_rows) and any(not np.array_equal(a, b) for a, b in zip(teacher_rows.ids, student_rows.ids))
    if task == "tagging":
        assert [len(s) for s in teacher_rows.starts] == [len(s) for s in student_rows.starts]
    assert metrics["student"][primary] >= 0.8 * metrics["teacher"][primary]
    loaded = load_student(tmp_path / "run" / "student")
    assert loaded.tokenizer.backend_tokenizer.to_str() == AutoTokenizer.from_pretrained(str(other_encoder)).backend_tokenizer.to_str()
    if task == "classification":
        import csv

        with open(files["test"]) as handle:
            rows = list(csv.DictReader(handle))
        accuracy = np.mean([p == r["label"] for p, r in zip(loaded.predict([r["text"] for r in rows]), rows)])
        assert accuracy == pytest.approx(metrics["student"]["accuracy"])


def test_a_killed_transformer_stage_resumes_to_the_uninterrupted_weights(tiny_teacher, other_encoder, sentiment_files, tmp_path):
    import json
    import subprocess
    import sys

    import yaml
    from safetensors.torch import load_file

    from test_kill_resume import _signal_when, _start

    def config(out):
        values = tiny_run_config(
            tiny_teacher, sentiment_files, out, student={"arch": "transformer", "encoder": str(other_encoder), "layers": 2},
            evaluation={"baseline": False, "latency_batch_sizes": []},
        ).model_dump(mode="json")
        values["distill"]["stages"] = [
            {"name": "soft", "losses": {"soft": 1.0}, "train": ["output"], "unfreeze": "gradual", "epochs": 1},
            {"name": "gold", "losses": {"gold": 1.0}, "data": "labeled", "epochs": 2},
        ]  # 4 + 1 stages
        return values

    whole_metrics = Run(build_config(config(tmp_path / "whole"), "test")).run()
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path / "run")))
    done = subprocess.run([sys.executable, "-m", "xdistil", "annotate", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    stages = tmp_path / "run" / "checkpoints" / "student"
    _signal_when(_start("distill", path), lambda: len(list(stages.glob("stage-*.json"))) >= 2)
    before = {p.name: p.stat().st_mtime_ns for p in stages.glob("stage-*.json")}
    assert 2 <= len(before) < 5
    resumed = subprocess.run([sys.executable, "-m", "xdistil", "run", str(path)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert all((stages / name).stat().st_mtime_ns == stamp for name, stamp in before.items()), "a finished stage was redone"
    assert resumed.stderr.count("already finished, loaded from checkpoint") >= len(before)
    a = load_file(str(tmp_path / "run" / "student" / "model.safetensors"))
    b = load_file(str(tmp_path / "whole" / "student" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["student"]["accuracy"] == whole_metrics["student"]["accuracy"]


def test_intermediate_layers_are_matched_online_across_tokenizers(tiny_teacher, other_encoder, sentiment_files, tmp_path):
    config = tiny_run_config(
        tiny_teacher, sentiment_files, tmp_path / "run", student={"arch": "transformer", "encoder": str(other_encoder), "layers": 2},
        evaluation={"baseline": False, "latency_batch_sizes": []},
    )
    config.distill.stages = [
        config.distill.stages[0].model_copy(
            update={"name": "layers", "losses": {"layers": {"weight": 1.0, "layer_map": {1: 1, 2: 2}}}, "epochs": 3, "monitor": "dev_loss"}
        ),
        config.distill.stages[2],
    ]
    config.distill.lr = 1e-3
    metrics = Run(config).run()
    layers = metrics["stages"]["student"][0]
    assert layers["name"] == "layers" and len(layers["epochs"]) == 3
    assert layers["epochs"][-1]["train_loss"] < layers["epochs"][0]["train_loss"]  # the student moves towards the teacher's layers
    from xdistil.distill.losses import LossContext, build_loss

    with pytest.raises(XDistilError, match=r"layer_map: 3 -> 1 is out of range \(student layers 0-2, teacher layers 0-2\)"):
        build_loss("layers", LossContext(24, 32, config.distill, student_layers=2, teacher_layers=2), {"layer_map": {3: 1}})
    with pytest.raises(XDistilError, match="needs a student and a teacher with hidden layers"):
        build_loss("layers", LossContext(24, 32, config.distill, student_layers=None, teacher_layers=2))


def test_attention_relations_are_distilled_into_a_student_cut_from_the_teacher(tiny_teacher, sentiment_files, tmp_path):
    config = tiny_run_config(
        tiny_teacher, sentiment_files, tmp_path / "run", student={"arch": "transformer", "encoder": "teacher", "layers": 1},
        evaluation={"baseline": False, "latency_batch_sizes": []},
    )
    config.distill.stages = [
        config.distill.stages[0].model_copy(update={
            "name": "attention", "losses": {"attention": {"weight": 1.0, "relation_heads": 4, "layers": (0, 1)}}, "epochs": 3,
            "monitor": "dev_loss",
        }),
        config.distill.stages[2],
    ]
    config.distill.lr = 1e-3
    metrics = Run(config).run()
    attention = metrics["stages"]["student"][0]
    assert attention["name"] == "attention" and len(attention["epochs"]) == 3
    assert attention["epochs"][-1]["train_loss"] < attention["epochs"][0]["train_loss"]
    assert metrics["student"]["accuracy"] > 0.5


def test_tokenizers_compare_by_their_rules_not_their_call_state(tiny_teacher, other_encoder):
    from xdistil.text import same_tokenization, tokenize

    used, fresh = AutoTokenizer.from_pretrained(str(tiny_teacher)), AutoTokenizer.from_pretrained(str(tiny_teacher))
    used(["a great film"] * 2, truncation=True, max_length=4, padding=True)
    tokenize(used, ["a great film"], 8)  # calls change the backend's truncation and padding state
    assert same_tokenization(used, fresh)
    assert not same_tokenization(fresh, AutoTokenizer.from_pretrained(str(other_encoder)))
