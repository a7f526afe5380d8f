"""Vocabulary pruning, PCA embeddings and the BiLSTM's and pooled student's padding handling."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xdistil.student.bilstm import BiLSTMConfig, BiLSTMStudent
from xdistil.student.embeddings import pca_compress
from xdistil.student.inputs import batch_inputs
from xdistil.student.pooled import PooledConfig, PooledStudent
from xdistil.student.vocab import PrunedVocab

SPECIALS = [0, 100, 101, 102, 103]  # pad, unk, cls, sep, mask as in BERT's vocabulary


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.integers(0, 499), max_size=12), max_size=20), st.lists(st.integers(0, 499), max_size=30))
def test_every_seen_piece_maps_to_itself_and_the_rest_to_unk(seen, probe):
    vocab = PrunedVocab.from_token_ids(seen, 500, SPECIALS, unk_teacher_id=100, pad_teacher_id=0)
    kept = set(SPECIALS) | {t for s in seen for t in s}
    assert len(vocab) == len(kept)
    encoded = vocab.encode(probe)
    for teacher_id, student_id in zip(probe, encoded):
        if teacher_id in kept:
            assert vocab.teacher_ids[student_id] == teacher_id
        else:
            assert student_id == vocab.unk_id
    assert vocab.teacher_ids[vocab.pad_id] == 0


def test_min_count_drops_rare_pieces():
    vocab = PrunedVocab.from_token_ids([[5, 5, 6]], 10, [0, 1], unk_teacher_id=1, pad_teacher_id=0, min_count=2)
    assert list(vocab.teacher_ids) == [0, 1, 5]
    assert vocab.encode([6])[0] == vocab.unk_id


def test_pca_keeps_the_top_directions_in_order():
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(16, 16))[0]
    scales = torch.tensor([10.0, 5.0, 2.0] + [0.01] * 13)
    matrix = (torch.randn(400, 16) * scales) @ basis.T
    reduced = pca_compress(matrix, 3)
    assert reduced.shape == (400, 3)
    variances = reduced.var(dim=0)
    assert variances[0] > variances[1] > variances[2]
    assert abs(float(reduced.std()) - 1.0) < 1e-4
    # 3 components explain nearly everything: a least-squares map back reconstructs the centred data
    centred = matrix - matrix.mean(0)
    solution = torch.linalg.lstsq(reduced.double(), centred.double()).solution
    residual = (reduced.double() @ solution - centred.double()).norm() / centred.norm()
    assert residual < 0.01


def test_padding_does_not_change_a_prediction():
    torch.manual_seed(0)
    model = BiLSTMStudent(BiLSTMConfig(vocab_size=20, num_labels=3, emb_dim=6, hidden=5, dense_dim=7, dropout=0.0)).eval()
    alone = batch_inputs([torch.tensor([3, 4, 5]).numpy()], pad_id=0)
    padded = batch_inputs([torch.tensor([3, 4, 5]).numpy(), torch.tensor(range(1, 12)).numpy()], pad_id=0)
    with torch.no_grad():
        a = model(alone)
        b = model(padded)
    assert torch.allclose(a.logits[0], b.logits[0], atol=1e-6)
    assert b.representation.shape == (2, 7)


def test_the_pooled_student_reads_the_mean_and_max_of_the_real_pieces_only():
    torch.manual_seed(0)
    model = PooledStudent(PooledConfig(vocab_size=20, num_labels=3, emb_dim=4, dense_dim=5, dropout=0.0)).eval()
    alone = batch_inputs([torch.tensor([3, 4, 5]).numpy()], pad_id=0)
    padded = batch_inputs([torch.tensor([3, 4, 5]).numpy(), torch.tensor(range(1, 12)).numpy()], pad_id=0)
    with torch.no_grad():
        a, b = model(alone), model(padded)
        rows = model.embedding.weight[torch.tensor([3, 4, 5])]
        expected = model.dense(torch.cat([rows.mean(0), rows.max(0).values]))
    assert torch.allclose(a.logits[0], b.logits[0], atol=1e-6)
    assert torch.allclose(b.representation[0], expected, atol=1e-6)
    assert sorted(model.layer_groups()) == ["dense", "embedding", "output"]


def test_a_pooled_student_with_one_pooling_is_narrower():
    mean = PooledStudent(PooledConfig(vocab_size=20, num_labels=2, emb_dim=4, pooling="mean", dense_dim=5))
    both = PooledStudent(PooledConfig(vocab_size=20, num_labels=2, emb_dim=4, dense_dim=5))
    assert mean.dense.in_features == 4 and both.dense.in_features == 8
