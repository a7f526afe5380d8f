"""The benchmark's E5S1 -> Hugging Face conversion, on a small synthetic file in the same format."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.resources.e5 import convert_e5, read_e5s1  # noqa: E402
from xdistil.errors import XDistilError  # noqa: E402

H, LAYERS, HEADS, FFN, MAXP, TYPES = 32, 1, 2, 64, 16, 2
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "\u2581a", "\u2581b", "b", "\u2581ab", "\u2581fi", "<mask>"]
SCORES = [0.0, 0.0, 0.0, 0.0, -2.0, -2.0, -3.0, -1.0, -2.0, 0.0]
VOCAB = 12  # embedding rows may exceed the vocabulary, as in the real file


def q4_blocks(rng: np.random.Generator, count: int) -> tuple[bytes, np.ndarray]:
    """Random 4-bit blocks and the weights they stand for, computed independently of the converter."""
    blocks = count // 32
    scales = rng.uniform(0.01, 0.1, blocks).astype(np.float16)
    nibbles = rng.integers(0, 16, (blocks, 32))
    raw = b"".join(
        struct.pack("<e", float(scales[b])) + bytes(int(nibbles[b, j]) | (int(nibbles[b, j + 16]) << 4) for j in range(16))
        for b in range(blocks)
    )
    return raw, ((nibbles - 8) * scales.astype(np.float32)[:, None]).reshape(-1)


def write_e5s1(path: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    tensors: dict[str, tuple[int, bytes, int]] = {}
    expected: dict[str, np.ndarray] = {}

    def q4(name: str, count: int) -> None:
        raw, values = q4_blocks(rng, count)
        tensors[name], expected[name] = (1, raw, count), values

    def f32(name: str, count: int, values: np.ndarray | None = None) -> None:
        values = rng.normal(0, 0.1, count).astype(np.float32) if values is None else values.astype(np.float32)
        tensors[name], expected[name] = (0, values.tobytes(), count), values

    q4("emb.word", VOCAB * H)
    f32("emb.pos", MAXP * H)
    f32("emb.type", TYPES * H)
    f32("emb.ln.w", H, np.ones(H))
    f32("emb.ln.b", H)
    for layer in range(LAYERS):
        for name, count in (("q", H * H), ("k", H * H), ("v", H * H), ("ao", H * H), ("fi", FFN * H), ("fo", H * FFN)):
            q4(f"l{layer}.{name}.w", count)
            f32(f"l{layer}.{name}.b", FFN if name == "fi" else H)
        for norm in ("aln", "oln"):
            f32(f"l{layer}.{norm}.w", H, np.ones(H))
            f32(f"l{layer}.{norm}.b", H)
    blob = b"".join(p.encode() for p in PIECES)
    offsets = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    norm = struct.pack("<I", 0x9) + bytes([1]) + struct.pack("<I", 0x20)  # tab -> space (NFKC keeps a tab)
    norm += struct.pack("<I", 0xFB01) + bytes([2]) + struct.pack("<2I", ord("f"), ord("i"))  # the fi ligature, as NFKC
    head = b"E5S1" + struct.pack("<I", 1) + struct.pack("<7i", H, LAYERS, HEADS, FFN, VOCAB, MAXP, TYPES) + struct.pack("<fi", 1e-12, 32)
    head += struct.pack("<5i", len(PIECES), 0, 2, 1, 3) + struct.pack("<Q", len(blob)) + offsets.tobytes()
    head += np.asarray(SCORES, "<f4").tobytes() + blob + struct.pack("<iI", 2, len(norm)) + norm
    directory = struct.pack("<i", len(tensors))
    entry_size = sum(2 + len(n) + 1 + 20 for n in tensors)
    data_start = len(head) + len(directory) + entry_size
    payload = b""
    for name, (dtype, raw, count) in tensors.items():
        directory += struct.pack("<H", len(name)) + name.encode() + bytes([dtype]) + struct.pack("<IQQ", count, data_start + len(payload), len(raw))
        payload += raw
    path.write_bytes(head + directory + payload)
    return expected


def test_conversion_gives_the_same_weights_and_tokenizer(tmp_path):
    from transformers import AutoTokenizer, BertModel

    expected = write_e5s1(tmp_path / "tiny.bin", np.random.default_rng(0))
    folder = convert_e5(tmp_path / "tiny.bin", tmp_path / "hf")
    model = BertModel.from_pretrained(str(folder)).eval()
    state = model.state_dict()
    # every tensor of the file, at the place and in the (out, in) layout BERT expects, written out here
    # independently of the converter's own table: a transposed or swapped q/k/v fails
    want = {
        "embeddings.word_embeddings.weight": expected["emb.word"].reshape(VOCAB, H),
        "embeddings.position_embeddings.weight": expected["emb.pos"].reshape(MAXP, H),
        "embeddings.token_type_embeddings.weight": expected["emb.type"].reshape(TYPES, H),
        "embeddings.LayerNorm.weight": expected["emb.ln.w"], "embeddings.LayerNorm.bias": expected["emb.ln.b"],
    }
    places = {"q": ("attention.self.query", (H, H)), "k": ("attention.self.key", (H, H)), "v": ("attention.self.value", (H, H)),
              "ao": ("attention.output.dense", (H, H)), "fi": ("intermediate.dense", (FFN, H)), "fo": ("output.dense", (H, FFN))}
    for layer in range(LAYERS):
        for short, (place, shape) in places.items():
            want[f"encoder.layer.{layer}.{place}.weight"] = expected[f"l{layer}.{short}.w"].reshape(shape)
            want[f"encoder.layer.{layer}.{place}.bias"] = expected[f"l{layer}.{short}.b"]
        for short, place in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            want[f"encoder.layer.{layer}.{place}.weight"] = expected[f"l{layer}.{short}.w"]
            want[f"encoder.layer.{layer}.{place}.bias"] = expected[f"l{layer}.{short}.b"]
    assert len(want) == len(expected)  # each tensor of the file has its place
    for name, values in want.items():
        assert state[name].shape == values.shape and np.allclose(state[name].numpy(), values), name
    assert {k for k in state if not k.startswith(("pooler.", "embeddings.position_ids"))} == set(want)
    tok = AutoTokenizer.from_pretrained(str(folder))
    # Unigram: "▁ab" (score -1) beats "▁a" + "b" (-5); a tab is a space; the ligature is NFKC-normalised
    assert tok.convert_ids_to_tokens(tok("ab\tb \ufb01")["input_ids"]) == ["<s>", "\u2581ab", "\u2581b", "\u2581fi", "</s>"]
    assert tok(["ab", "b"], is_split_into_words=True).word_ids() == [None, 0, 1, None]
    with torch.no_grad():
        hidden = model(**tok("ab b", return_tensors="pt")).last_hidden_state
    assert hidden.shape == (1, 4, H) and torch.isfinite(hidden).all()


def test_a_cut_or_foreign_file_is_a_one_line_error(tmp_path):
    write_e5s1(tmp_path / "tiny.bin", np.random.default_rng(1))
    data = (tmp_path / "tiny.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(XDistilError, match="truncated or damaged"):
        read_e5s1(tmp_path / "cut.bin")
    (tmp_path / "other.bin").write_bytes(b"GGUF" + data[4:])
    with pytest.raises(XDistilError, match="not an E5S1"):
        read_e5s1(tmp_path / "other.bin")
