"""ONNX export: every family and task reproduces the PyTorch student's outputs, int8 stays close,
and an exported folder predicts with onnxruntime + tokenizers only (no torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import tiny_run_config
from test_cli import xdistil
from xdistil import load_student
from xdistil.export.onnx import export_onnx
from xdistil.export.runtime import OnnxStudent
from xdistil.pipeline import Run

QUICK = {"evaluation": {"baseline": False, "latency_batch_sizes": []}}
TEXTS = ["a great superb film", "dull boring film", "film", "great " * 60, "an unseenword and film"]
SENTENCES = ["alice met bob in paris", "rome", ["carol", "visited", "rome", "and", "paris"] * 9]


def _run(config) -> object:
    Run(config).run(until="distill")
    return config.out / "student"


@pytest.fixture(scope="module")
def students(tiny_teacher, other_encoder, sentiment_files, tagging_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    transformer = {"arch": "transformer", "encoder": str(other_encoder), "layers": 2}
    made = {}
    made["bilstm classification"] = _run(tiny_run_config(tiny_teacher, sentiment_files, root / "bc", **QUICK))
    made["pooled classification"] = _run(tiny_run_config(tiny_teacher, sentiment_files, root / "pc", student={"arch": "pooled", "emb_dim": 8},
                                                          **QUICK))
    made["bilstm tagging"] = _run(tiny_run_config(tiny_teacher, tagging_files, root / "bt", task="tagging",
                                                  student={"emb_dim": 8, "hidden": 8, "layers": 2}, **QUICK))
    for task, files in (("classification", sentiment_files), ("tagging", tagging_files)):
        narrow = {"emb_dim": 8} if task == "tagging" else {}  # the tagger also exports a narrowed (factorised) embedding
        config = tiny_run_config(tiny_teacher, files, root / f"t{task}", task=task, student={**transformer, **narrow}, **QUICK)
        config.distill.stages = config.distill.stages[1:2]  # the soft-logit stage is enough to export a trained student
        made[f"transformer {task}"] = _run(config)
    return made


@pytest.mark.parametrize("kind", ["bilstm classification", "pooled classification", "bilstm tagging", "transformer classification", "transformer tagging"])
def test_onnx_export_reproduces_the_student(students, kind, tmp_path):
    folder = export_onnx(students[kind].parent, tmp_path / "onnx")  # a run folder works as well as its student/
    torch_student, onnx_student = load_student(students[kind]), OnnxStudent(folder)
    inputs = SENTENCES if "tagging" in kind else TEXTS
    expected, got = torch_student.predict_proba(inputs), onnx_student.predict_proba(inputs)
    if "tagging" in kind:
        assert [len(e) for e in expected] == [len(g) for g in got] == [5, 1, 45]
        assert max(float(np.abs(e - g).max()) for e, g in zip(expected, got)) < 1e-4
    else:
        assert expected.shape == got.shape == (len(TEXTS), 2)
        assert float(np.abs(expected - got).max()) < 1e-4
    assert onnx_student.predict(inputs) == torch_student.predict(inputs)


def test_int8_export_is_quantised_and_agrees(students, tmp_path):
    fp32 = export_onnx(students["transformer classification"], tmp_path / "fp32")
    int8 = export_onnx(students["transformer classification"], tmp_path / "int8", int8=True)
    import onnx

    ops = {node.op_type for node in onnx.load(str(int8 / "model.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear"}, ops  # the weights are int8 now
    # (on disk a tiny model hardly shrinks: benchmarks/deploy.py measures real sizes)
    assert json.loads((int8 / "onnx_config.json").read_text())["precision"] == "int8"
    probs_32, probs_8 = OnnxStudent(fp32).predict_proba(TEXTS), OnnxStudent(int8).predict_proba(TEXTS)
    assert float(np.abs(probs_32 - probs_8).max()) < 0.1


def test_unpacked_bilstm_equals_the_packed_one_on_ragged_batches(students):
    import torch

    student = load_student(students["bilstm tagging"])  # two layers: the reversal composes across layers
    ids = torch.randint(0, len(student.vocab), (4, 9))
    lengths = torch.tensor([9, 3, 1, 6])
    word_index = torch.tensor([[0, 2, 8], [0, 1, 2], [0, 0, 0], [1, 4, 5]])
    batch = {"input_ids": ids, "lengths": lengths, "word_index": word_index}
    with torch.inference_mode():
        packed = student.model(batch).logits
        unpacked = student.model.export_module()(ids, lengths, word_index)
    assert torch.allclose(packed, unpacked, atol=1e-6)


def test_exported_student_predicts_without_torch(students, tmp_path):
    folder = export_onnx(students["bilstm classification"], tmp_path / "onnx")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None          # any import of torch or transformers now fails
        sys.modules["transformers"] = None
        from xdistil.export.runtime import OnnxStudent
        print(OnnxStudent({str(folder)!r}).predict(["a great superb film", "dull boring film"]))
        assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "XDISTIL_QUIET": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(load_student(students["bilstm classification"]).predict(["a great superb film", "dull boring film"]))


def test_export_and_predict_through_the_cli(students, tmp_path):
    out = tmp_path / "exported"
    result = xdistil("export", str(students["bilstm classification"]), "--out", str(out), "--int8")
    assert result.returncode == 0, result.stderr
    predicted = xdistil("predict", str(out), "a great superb film", "dull boring film")
    assert predicted.returncode == 0, predicted.stderr
    assert len(predicted.stdout.split()) == 2 and set(predicted.stdout.split()) <= {"pos", "neg"}


def test_cli_predict_on_an_exported_folder_never_imports_torch(students, tmp_path):
    folder = export_onnx(students["bilstm tagging"], tmp_path / "onnx")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        sys.argv = ["xdistil", "predict", {str(folder)!r}, "alice met bob in paris"]
        from xdistil.cli import main
        main()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "XDISTIL_QUIET": "1"})
    assert result.returncode == 0, result.stderr
    assert [pair.split("/")[0] for pair in result.stdout.split()] == ["alice", "met", "bob", "in", "paris"]
