"""A student exported to ONNX, run with onnxruntime, tokenizers and numpy only (no torch, no transformers).

The folder holds `model.onnx`, the student's `tokenizer.json`, `onnx_config.json` (task, labels,
maximum length, the pruned vocabulary's map from tokenizer ids to the student's) and `manifest.json`
(their checksums: a missing, altered or edited file is refused on load). Tokenization is
the training code's own (`xdistil.text`), fed by a thin adapter over the `tokenizers` library.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from xdistil.errors import XDistilError
from xdistil.manifest import MANIFEST, verify_manifest
from xdistil.predictor import Predictor
from xdistil.tasks.description import describe

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

    def __call__(self, texts, text_pair=None, is_split_into_words: bool = False, add_special_tokens: bool = True, truncation: bool = False):
        single = is_split_into_words and all(isinstance(t, str) for t in texts)  # one pre-split sentence, as transformers reads it
        if single:
            inputs = [list(texts)]
        elif text_pair is not None:  # two segments per input, joined by the tokenizer's own template
            inputs = list(zip(texts, text_pair))
        else:
            inputs = [list(t) for t in texts] if is_split_into_words else list(texts)
        encodings = self.backend.encode_batch(inputs, is_pretokenized=is_split_into_words, add_special_tokens=add_special_tokens)
        return _Encoded(encodings, single)


class OnnxStudent(Predictor):
    """An exported student: `predict(items)` / `predict_proba(items)` through the same front end as the PyTorch
    one (`xdistil.predictor`), onnxruntime as its backend (a tagger takes sentences: word lists or whitespace-split strings)."""

    def __init__(self, folder: str | Path, threads: int | None = None):
        import onnxruntime as ort

        folder = Path(folder)
        if not (folder / ONNX_CONFIG).is_file() or not (folder / MODEL).is_file():
            raise XDistilError(f"{folder}: not an exported student (expected {MODEL} and {ONNX_CONFIG}; see `xdistil export`)")
        verify_manifest(folder, ONNX_FORMAT, REQUIRED, "exported student")
        meta = json.loads((folder / ONNX_CONFIG).read_text(encoding="utf-8"))
        try:
            self.task = describe(meta["task"])
        except ValueError as err:
            raise XDistilError(f"{folder / ONNX_CONFIG}: {err} (register the task before loading its students)") from None
        self.label_names, self.max_length = meta["label_names"], meta["max_length"]
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

    def _forward(self, ids: np.ndarray, lengths: np.ndarray, word_index: np.ndarray | None) -> np.ndarray:
        feed = {"input_ids": ids, "lengths": lengths}
        if word_index is not None:
            feed["word_index"] = word_index
        return self.session.run(["logits"], feed)[0]
