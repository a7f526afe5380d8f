"""Student embeddings from each word piece's output vector (model2vec's static vectors), SIF-weighted, cached."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from conftest import tiny_run_config
from xdistil.pipeline import Run
from xdistil.student import embeddings as embeddings_module
from xdistil.student.base import StudentContext
from xdistil.student.bilstm import BiLSTMSettings, BiLSTMStudent
from xdistil.student.pooled import PooledSettings, PooledStudent
from xdistil.student.embeddings import EmbeddingSource, pca_compress, piece_vectors, sif_weights
from xdistil.student.vocab import PrunedVocab
from xdistil.teacher.store import Teacher


@pytest.fixture(scope="module")
def parts(tiny_teacher):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher))
    teacher = AutoModelForSequenceClassification.from_pretrained(str(tiny_teacher), num_labels=2).eval()
    counts = np.zeros(len(tokenizer), dtype=np.int64)
    counts[[5, 6, 7, 9, 12]] = [100, 3, 1, 40, 7]
    vocab = PrunedVocab.from_counts(counts, tokenizer.all_special_ids, tokenizer.unk_token_id, tokenizer.pad_token_id)
    return tokenizer, teacher, vocab


def test_a_piece_vector_is_the_encoder_output_at_the_piece_alone(parts):
    tokenizer, teacher, vocab = parts
    vectors = piece_vectors(teacher.base_model, vocab.teacher_ids, tokenizer.cls_token_id, tokenizer.sep_token_id, batch_size=3)
    for row, piece in enumerate(vocab.teacher_ids):
        framed = torch.tensor([[tokenizer.cls_token_id, int(piece), tokenizer.sep_token_id]])
        with torch.no_grad():
            direct = teacher.base_model(input_ids=framed).last_hidden_state[0, 1]
        assert torch.allclose(vectors[row], direct, atol=1e-5), row


def test_output_vectors_are_cached_per_encoder_and_vocabulary(parts, tiny_teacher, tmp_path, monkeypatch):
    tokenizer, teacher, vocab = parts
    source = EmbeddingSource.of(Teacher(teacher, "teacher-fp"), tokenizer, str(tiny_teacher), tmp_path / "vectors")
    first = source.output_vectors(vocab.teacher_ids, "teacher")
    base = source.output_vectors(vocab.teacher_ids, "base")
    encoder = AutoModel.from_pretrained(str(tiny_teacher)).eval()
    assert torch.allclose(base, piece_vectors(encoder, vocab.teacher_ids, tokenizer.cls_token_id, tokenizer.sep_token_id), atol=1e-5)
    assert torch.allclose(first, base, atol=1e-5)  # this teacher is not fine-tuned: its encoder is the checkpoint's
    assert len(list((tmp_path / "vectors").glob("*.safetensors"))) == 2  # one file per encoder
    calls = []
    monkeypatch.setattr(embeddings_module, "piece_vectors", lambda *a, **k: calls.append(a) or torch.zeros(1))
    assert torch.equal(source.output_vectors(vocab.teacher_ids, "teacher"), first) and not calls  # read back, not recomputed
    source.output_vectors(vocab.teacher_ids[:-1], "teacher")  # another vocabulary: computed
    assert len(calls) == 1


def test_bilstm_tables_from_output_vectors_and_sif_weights(parts, tiny_teacher, tmp_path):
    tokenizer, teacher, vocab = parts
    source = EmbeddingSource.of(Teacher(teacher, "fp"), tokenizer, str(tiny_teacher), tmp_path / "vectors")
    context = StudentContext(vocab, 2, False, teacher, source)

    def table(**settings) -> torch.Tensor:
        torch.manual_seed(0)
        return BiLSTMStudent.build(BiLSTMSettings(emb_dim=4, hidden=4, **settings), context).embedding.weight.detach()

    vectors = source.output_vectors(vocab.teacher_ids, "teacher")
    assert torch.allclose(table(embedding_init="teacher_output"), pca_compress(vectors, 4))
    weights = sif_weights(vocab.counts, 1e-2)
    assert weights[vocab.lookup[5]] < weights[vocab.lookup[7]] < 1  # the frequent piece weighs less
    weighted = pca_compress(vectors, 4) * weights[:, None]
    assert torch.allclose(table(embedding_init="teacher_output", embedding_sif=1e-2), weighted / weighted.std())
    input_table = teacher.get_input_embeddings().weight.detach()[torch.as_tensor(vocab.teacher_ids)]
    assert torch.allclose(table(), pca_compress(input_table, 4))  # the default: the input table, as before


def test_the_pooled_student_starts_from_the_same_tables(parts, tiny_teacher, tmp_path):
    tokenizer, teacher, vocab = parts
    source = EmbeddingSource.of(Teacher(teacher, "fp"), tokenizer, str(tiny_teacher), tmp_path / "vectors")
    context = StudentContext(vocab, 2, False, teacher, source)
    settings = PooledSettings(emb_dim=4, embedding_init="teacher_output", embedding_sif=1e-2)
    pooled = PooledStudent.build(settings, context).embedding.weight.detach()
    bilstm = BiLSTMStudent.build(BiLSTMSettings(emb_dim=4, hidden=4, embedding_init="teacher_output", embedding_sif=1e-2), context)
    assert torch.allclose(pooled, bilstm.embedding.weight.detach())
    with pytest.raises(ValueError, match="whole texts"):
        PooledStudent.build(settings, StudentContext(vocab, 2, True, teacher, source))


def test_a_run_with_output_vector_embeddings_keeps_them_beside_the_teacher(tiny_teacher, sentiment_files, tmp_path):
    config = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "run", student={"emb_dim": 8, "hidden": 8,
                                                                                        "embedding_init": "base_output", "embedding_sif": 1e-3})
    metrics = Run(config).run()
    assert metrics["student"]["accuracy"] > 0.5
    assert len(list((tmp_path / "run" / "teacher" / "piece-vectors").glob("piece-vectors-base-*.safetensors"))) == 1
