"""The transfer cache: chunked, resumable, verified on load, refused for other inputs."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import make_sentence
from xdistil.errors import XDistilError
from xdistil.transfer.augment import augment_texts
from xdistil.config import AugmentConfig
from xdistil.transfer.annotators import classify_chunk, tag_chunk
from xdistil.transfer.cache import AnnotationSpec, TransferCache, annotate
from xdistil.transfer.labelers import TeacherLabeler, TokenLabeler


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_teacher), num_labels=2).eval()
    return model, AutoTokenizer.from_pretrained(str(tiny_teacher))


def texts(n=50):
    import random

    rng = random.Random(1)
    return [make_sentence(rng, "pos")[: rng.randint(5, 60)] for _ in range(n)]


SPEC = AnnotationSpec(max_length=16, batch_size=8, chunk_size=12, layer=1, pooling="first", dtype="float16")


def test_annotation_matches_a_direct_forward_pass(teacher, tmp_path):
    model, tokenizer = teacher
    data = texts(30)
    cache = annotate(TeacherLabeler(model, tokenizer, classify_chunk, None, "teacher"), iter(data), len(data), tmp_path / "c", SPEC, "fp1")
    rows = cache.load()
    ids, logits, reps = rows.ids, rows.logits, rows.representations
    assert logits.shape == (30, 2) and reps.shape == (30, 32) and reps.dtype == np.float16
    import torch

    for row, text in enumerate(data):  # every row, in order: batching by length never mixes rows up
        assert ids[row].tolist() == tokenizer(text, truncation=True, max_length=16)["input_ids"]
        with torch.no_grad():
            enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=16)
            direct = model(**enc, output_hidden_states=True)
        assert np.allclose(logits[row], direct.logits[0].numpy(), atol=1e-4), row
        assert np.allclose(reps[row], direct.hidden_states[1][0, 0].numpy(), atol=1e-2), row


def test_resume_redoes_only_missing_or_damaged_chunks(teacher, tmp_path):
    model, tokenizer = teacher
    data = texts(50)
    cache = annotate(TeacherLabeler(model, tokenizer, classify_chunk, None, "teacher"), data, len(data), tmp_path / "c", SPEC, "fp1")
    before = cache.load()
    before_logits, before_reps = before.logits, before.representations
    stamps = {i: cache.chunk_path(i).stat().st_mtime_ns for i in range(cache.num_chunks())}
    cache.chunk_path(1).unlink()  # a run killed before chunk 1 was written
    raw = cache.chunk_path(3).read_bytes()
    cache.chunk_path(3).write_bytes(raw[: len(raw) // 2])  # a torn file
    tampered = bytearray(cache.chunk_path(0).read_bytes())
    tampered[-3] ^= 0xFF  # a flipped byte inside the tensor data
    cache.chunk_path(0).write_bytes(bytes(tampered))
    with pytest.raises(XDistilError, match="missing or damaged chunk"):
        TransferCache(tmp_path / "c").load()
    annotate(TeacherLabeler(model, tokenizer, classify_chunk, None, "teacher"), data, len(data), tmp_path / "c", SPEC, "fp1")
    after = {i: cache.chunk_path(i).stat().st_mtime_ns for i in range(cache.num_chunks())}
    redone = {i for i in stamps if after[i] != stamps[i]}
    assert redone == {0, 1, 3}
    after = cache.load()
    logits, reps = after.logits, after.representations
    assert np.array_equal(logits, before_logits) and np.array_equal(reps, before_reps)


def test_a_cache_of_other_inputs_is_redone_not_read(teacher, tmp_path):
    model, tokenizer = teacher
    small = SPEC.__class__(**{**SPEC.__dict__, "chunk_size": 4})
    annotate(TeacherLabeler(model, tokenizer, classify_chunk, None, "teacher"), texts(10), 10, tmp_path / "c", small, "fp1")
    assert TransferCache(tmp_path / "c").num_chunks() == 3
    redone = annotate(TeacherLabeler(model, tokenizer, classify_chunk, None, "teacher"), texts(5), 5, tmp_path / "c", small, "fp2")
    assert redone.manifest["fingerprint"] == "fp2" and len(redone.load().logits) == 5
    # the earlier config's third chunk is gone, not left beside the new ones
    assert sorted(p.name for p in (tmp_path / "c").glob("chunk-*")) == ["chunk-00000.safetensors", "chunk-00001.safetensors"]


def test_augmentation_is_seeded_and_new():
    data = ["a truly great and moving film", "dull and tedious from start to end"]
    config = AugmentConfig(factor=5, p_mask=0.2, p_swap=0.2, p_ngram=0.5)
    first = augment_texts(data, config, "[MASK]", seed=1)
    assert first == augment_texts(data, config, "[MASK]", seed=1)
    assert first != augment_texts(data, config, "[MASK]", seed=2)
    assert 0 < len(first) <= 10 and not set(first) & set(data)
    assert augment_texts(data, AugmentConfig(factor=0), "[MASK]", seed=1) == []


def test_transfer_batches_visit_every_row_once_per_epoch_from_a_bounded_window(teacher, tmp_path):
    from xdistil.text import IGNORE
    from xdistil.distill.runner import TransferBatches
    from xdistil.student.vocab import PrunedVocab

    model, tokenizer = teacher
    import random

    rng = random.Random(5)
    data = list(dict.fromkeys(make_sentence(rng, rng.choice(["pos", "neg"])) for _ in range(80)))[:50]
    assert len(data) == 50
    cache = annotate(TeacherLabeler(model, tokenizer, classify_chunk, None, "teacher"), data, len(data), tmp_path / "c", SPEC, "fp1")  # 5 chunks of 12, the last of 2
    vocab = PrunedVocab.from_counts(cache.token_counts(len(tokenizer)), tokenizer.all_special_ids, tokenizer.unk_token_id, tokenizer.pad_token_id)
    all_ids = cache.load().ids
    row_of = {tuple(vocab.encode(ids).tolist()): row for row, ids in enumerate(all_ids)}
    assert len(row_of) == 50
    labels = [1, 0, 1]
    batches = TransferBatches(cache, vocab, labels, batch_size=5, seed=3, window=2)
    # count the chunks read into memory between two batches: never more than the window
    reads: list[int] = []
    read_chunk = cache.chunk
    cache.chunk = lambda index: (reads.append(index), read_chunk(index))[1]
    orders = []
    for epoch in (1, 2):
        batches.set_epoch(epoch)
        seen = []
        count = 0
        reads.clear()
        resident: list[int] = []
        for batch in batches:
            resident.append(len(reads))
            reads.clear()
            count += 1
            assert batch["input_ids"].shape[0] <= 5
            for ids, length, gold in zip(batch["input_ids"], batch["lengths"], batch["labels"]):
                row = row_of[tuple(ids[: int(length)].tolist())]
                seen.append(row)
                assert int(gold) == (labels[row] if row < 3 else IGNORE)
        assert count == len(batches)
        assert sorted(seen) == list(range(50))
        assert max(resident) <= 2 and sum(resident) == 5  # each of the 5 chunks read once per epoch, 2 at a time at most
        orders.append(seen)
    assert orders[0] != orders[1]
    # a transfer-size study reads only the first rows of the same cache
    for stop in (3, 12, 20):
        limited = TransferBatches(cache, vocab, labels, batch_size=5, seed=3, stop=stop, window=2)
        limited.set_epoch(1)
        seen = [row_of[tuple(ids[: int(n)].tolist())] for batch in limited for ids, n in zip(batch["input_ids"], batch["lengths"])]
        assert sorted(seen) == list(range(stop)) and len(limited) == sum(1 for _ in limited)


def test_tagging_cache_holds_one_row_per_word_and_resumes_exactly(tiny_teacher, tmp_path):
    import random
    from dataclasses import replace

    from transformers import AutoModelForTokenClassification

    from conftest import make_tagged
    from xdistil.text import encode_words

    model = AutoModelForTokenClassification.from_pretrained(str(tiny_teacher), num_labels=5).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher))
    rng = random.Random(2)
    sentences = [make_tagged(rng, rng.choice([3, 8, 30]))[0] for _ in range(40)]  # some longer than 16 pieces
    spec = replace(SPEC, task="tagging", pooling="none")
    cache = annotate(TeacherLabeler(model, tokenizer, tag_chunk, None, "teacher"), iter(sentences), len(sentences), tmp_path / "t", spec, "fp-tag")
    rows = cache.load()
    assert [len(s) for s in rows.starts] == [len(s) for s in sentences]
    assert rows.logits.shape == (sum(len(s) for s in sentences), 5) and rows.representations.shape[0] == rows.logits.shape[0]
    for encoded, ids, starts in zip(encode_words(tokenizer, sentences), rows.ids, rows.starts):
        assert np.array_equal(ids, encoded.ids) and np.array_equal(starts, encoded.starts)  # whole sentences, never cut
    assert cache.truncated() == sum(len(e.ids) > 16 for e in encode_words(tokenizer, sentences))  # split and counted
    before = rows.logits.copy()
    cache.chunk_path(1).unlink()  # as if killed during chunk 1
    again = annotate(TeacherLabeler(model, tokenizer, tag_chunk, None, "teacher"), iter(sentences), len(sentences), tmp_path / "t", spec, "fp-tag")
    assert np.array_equal(again.load().logits, before)
    assert again.load().head(5).logits.shape[0] == sum(len(s) for s in sentences[:5])


def test_annotated_parts_each_get_a_cache_and_a_note_for_cut_texts(teacher, tmp_path):
    import json

    from xdistil.transfer.annotators import classify_tokens
    from xdistil.transfer.cache import PairedCache, annotate_parts

    model, tokenizer = teacher
    long_text = " ".join(["good film"] * 20)  # more than 16 pieces: cut
    parts = {"transfer": (iter(texts(20) + [long_text]), 21, "fp-transfer"), "dev": (iter(texts(5)), 5, "fp-dev")}
    annotation = annotate_parts(TeacherLabeler(model, tokenizer, classify_chunk, None, "teacher-fp"), parts, tmp_path / "cache", SPEC, "cut")
    assert set(annotation.caches) == {"transfer", "dev"}
    assert len(annotation.caches["transfer"]) == 21 and len(annotation.caches["dev"]) == 5
    assert annotation.notes == ["transfer: 1 texts longer than 16 word pieces were cut"]
    manifests = {name: json.loads((tmp_path / "cache" / name / "manifest.json").read_text()) for name in ("transfer", "dev")}
    assert manifests["transfer"]["fingerprint"] != manifests["dev"]["fingerprint"]  # the texts' fingerprint is part of it
    assert manifests["transfer"]["chunk_size"] == 12 and manifests["transfer"]["n"] == 21 and manifests["transfer"]["layer"] == 1
    assert annotation.caches["transfer"].truncated() == 1 and annotation.caches["dev"].truncated() == 0
    # a token-only cache of the same texts, paired: the student's ids beside the teacher's targets, chunk by chunk
    spec = AnnotationSpec(16, 8, 12, None, None, "float32", "classification-tokens")
    tokens = annotate_parts(TokenLabeler(tokenizer, classify_tokens, "student-fp"), {"transfer": (iter(texts(20) + [long_text]), 21, "fp-transfer")},
                            tmp_path / "tokens", spec, "cut", who="student tokens")
    paired = PairedCache(annotation.caches["transfer"], tokens.caches["transfer"])
    for index in range(paired.num_chunks()):
        teacher_rows, token_rows, both = annotation.caches["transfer"].chunk(index), tokens.caches["transfer"].chunk(index), paired.chunk(index)
        assert [a.tolist() for a in both.ids] == [a.tolist() for a in token_rows.ids]
        assert np.array_equal(both.logits, teacher_rows.logits) and np.array_equal(both.representations, teacher_rows.representations)
        assert [a.tolist() for a in both.teacher_input_ids] == [a.tolist() for a in teacher_rows.ids]
    counts = paired.token_counts(len(tokenizer))
    assert np.array_equal(counts, tokens.caches["transfer"].token_counts(len(tokenizer)))


def test_the_annotation_spec_of_a_run_config(tiny_teacher, sentiment_files, tmp_path):
    from conftest import tiny_run_config

    config = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "run", transfer={"chunk_size": 77, "batch_size": 9, "dtype": "float32"})
    spec = AnnotationSpec.from_config(config, 2, "mean")
    assert spec == AnnotationSpec(32, 9, 77, 2, "mean", "float32", "classification", "fp32")
    assert "precision" not in spec.identity()  # fp32, the default, leaves caches made before the setting valid
    int8 = AnnotationSpec(32, 9, 77, 2, "mean", "float32", "classification", "int8")
    assert int8.identity()["precision"].startswith("int8: ") and {k: v for k, v in int8.identity().items() if k != "precision"} == spec.identity()


def test_a_cache_linked_from_another_run_is_never_rewritten_for_other_settings(teacher, tmp_path):
    model, tokenizer = teacher
    data = texts(20)
    labeler = TeacherLabeler(model, tokenizer, classify_chunk, None, "teacher")
    annotate(labeler, data, len(data), tmp_path / "base" / "dev", SPEC, "fp1")
    before = {p.name: p.read_bytes() for p in (tmp_path / "base" / "dev").iterdir()}
    (tmp_path / "row").mkdir()
    (tmp_path / "row" / "dev").symlink_to(tmp_path / "base" / "dev")
    assert len(annotate(labeler, data, len(data), tmp_path / "row" / "dev", SPEC, "fp1")) == 20  # the same settings: read as it is
    with pytest.raises(XDistilError, match=r"row/dev: this cache is linked from .*base/dev and was made for other settings"):
        annotate(labeler, data, len(data), tmp_path / "row" / "dev", SPEC, "fp2")
    assert {p.name: p.read_bytes() for p in (tmp_path / "base" / "dev").iterdir()} == before
