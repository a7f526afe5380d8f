"""A student exported to ONNX, run with onnxruntime, tokenizers and numpy only (no torch, no transformers).

The folder holds `model.onnx`, the student's `tokenizer.json`, `onnx_config.json` (task, labels,
maximum length, the pruned vocabulary's map from tokenizer ids to the student's) and `manifest.json`
(their checksums: a missing, altered or edited file is refused on load). Tokenization is
the training code's own (`xdistil.text`), fed by a thin adapter over the `tokenizers` library.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xdistil.data.readers import MAX_CHARS, clip
from xdistil.errors import XDistilError
from xdistil.manifest import MANIFEST, verify_manifest
from xdistil.numeric import softmax
from xdistil.text import encode_words, tokenize

ONNX_CONFIG = "onnx_config.json"
MODEL = "model.onnx"
ONNX_FORMAT = "xdistil-onnx/1"
REQUIRED = (MODEL, ONNX_CONFIG, "tokenizer.json")  # the files an exported folder's manifest must list


def is_exported_folder(folder: Path) -> bool:
    """True when `folder` holds an export xdistil made and nothing else: its manifest checks out and lists
    every file in it (only such a folder may be replaced by a new export)."""
    try:
        verify_manifest(folder, ONNX_FORMAT, REQUIRED, "exported student")
        listed = set(json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["sha256"])
    except XDistilError:
        return False
    return all(p.name in listed or p.name == MANIFEST for p in folder.iterdir())


class _Encoded:
    """What `xdistil.text` reads from a tokenizer call: `["input_ids"]` and `word_ids(row)`."""

    def __init__(self, encodings, single: bool):
        self.encodings, self.single = encodings, single

    def __getitem__(self, key: str) -> list:
        if key != "input_ids":
            raise KeyError(key)
        ids = [e.ids for e in self.encodings]
        return ids[0] if self.single else ids  # one sequence in, one id list out, as transformers does

    def word_ids(self, row: int = 0) -> list[int | None]:
        return self.encodings[row].word_ids


class TokenizerAdapter:
    """A `tokenizers.Tokenizer` called like a transformers fast tokenizer (the calls `xdistil.text` makes)."""

    def __init__(self, path: Path, unk_token_id: int):
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_file(str(path))
        self.backend.no_truncation()
        self.backend.no_padding()
        self.unk_token_id = unk_token_id

    def __call__(self, texts, is_split_into_words: bool = False, add_special_tokens: bool = True, truncation: bool = False):
        single = is_split_into_words and all(isinstance(t, str) for t in texts)  # one pre-split sentence, as transformers reads it
        if single:
            inputs = [list(texts)]
        else:
            inputs = [list(t) for t in texts] if is_split_into_words else list(texts)
        encodings = self.backend.encode_batch(inputs, is_pretokenized=is_split_into_words, add_special_tokens=add_special_tokens)
        return _Encoded(encodings, single)


class OnnxStudent:
    """An exported student: `predict(texts)` / `predict_proba(texts)` like the PyTorch one (a tagger
    takes sentences: word lists or whitespace-split strings)."""

    def __init__(self, folder: str | Path, threads: int | None = None):
        import onnxruntime as ort

        folder = Path(folder)
        if not (folder / ONNX_CONFIG).is_file() or not (folder / MODEL).is_file():
            raise XDistilError(f"{folder}: not an exported student (expected {MODEL} and {ONNX_CONFIG}; see `xdistil export`)")
        verify_manifest(folder, ONNX_FORMAT, REQUIRED, "exported student")
        meta = json.loads((folder / ONNX_CONFIG).read_text(encoding="utf-8"))
        self.task, self.label_names, self.max_length = meta["task"], meta["label_names"], meta["max_length"]
        self.lookup = np.asarray(meta["vocab_lookup"], dtype=np.int64)
        self.pad_id = meta["pad_id"]
        self.tokenizer = TokenizerAdapter(folder / "tokenizer.json", meta["unk_teacher_id"])
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(folder / MODEL), options, providers=["CPUExecutionProvider"])
        width = self.session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != len(self.label_names):  # with checksums forged to match, the parts must still agree
            raise XDistilError(f"{folder / ONNX_CONFIG}: {len(self.label_names)} label names for a model with {width} outputs")

    def _run(self, sequences: list[np.ndarray], word_index: np.ndarray | None = None) -> np.ndarray:
        return softmax(self._logits(sequences, word_index))

    def _logits(self, sequences: list[np.ndarray], word_index: np.ndarray | None = None) -> np.ndarray:
        lengths = np.asarray([len(s) for s in sequences], dtype=np.int64)
        ids = np.full((len(sequences), int(lengths.max())), self.pad_id, dtype=np.int64)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = sequence
        feed = {"input_ids": ids, "lengths": lengths}
        if word_index is not None:
            feed["word_index"] = word_index
        return self.session.run(["logits"], feed)[0]

    def logits(self, texts: Sequence[str] | str, batch_size: int = 256) -> np.ndarray:
        """Classification: the raw logits, one row per text (what export is checked against)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        ids, _ = tokenize(self.tokenizer, [clip(t, MAX_CHARS)[0] for t in texts], self.max_length)
        sequences = [self.lookup[np.asarray(i, dtype=np.int64)] for i in ids]
        return np.concatenate([self._logits(sequences[start : start + batch_size]) for start in range(0, len(sequences), batch_size)])

    def predict_proba(self, texts: Sequence | str, batch_size: int = 256):
        """Classification: (texts, labels) probabilities. Tagging: per sentence, (words, labels)."""
        if isinstance(texts, str):
            texts = [texts]
        if self.task == "tagging":
            return self._tag_proba(texts, batch_size)
        return softmax(self.logits(texts, batch_size))

    def _tag_proba(self, sentences: Sequence, batch_size: int) -> list[np.ndarray]:
        words = [clip(s, MAX_CHARS)[0].split() if isinstance(s, str) else list(s) for s in sentences]
        encoded = encode_words(self.tokenizer, words)
        out: list[np.ndarray] = []
        for start in range(0, len(encoded), batch_size):
            part = encoded[start : start + batch_size]
            index = np.zeros((len(part), max(len(e) for e in part)), dtype=np.int64)
            for row, sentence in enumerate(part):
                index[row, : len(sentence)] = sentence.starts
            probs = self._run([self.lookup[e.ids.astype(np.int64)] for e in part], index)
            out.extend(probs[row, : len(e)] for row, e in enumerate(part))
        return out

    def predict(self, texts: Sequence | str, batch_size: int = 256) -> list:
        """Label names per text, or per word of each sentence for a tagger."""
        probs = self.predict_proba(texts, batch_size)
        if self.task == "tagging":
            return [[self.label_names[i] for i in p.argmax(1)] for p in probs]
        return [self.label_names[i] for i in probs.argmax(1)]
