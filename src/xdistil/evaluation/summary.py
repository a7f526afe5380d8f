"""A finished run's figures as metrics.json holds them: quality and loyalty on test, size, and CPU
latency of teacher and student measured in the same process on the same batches."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from xdistil.config import RunConfig
from xdistil.data.corpus import Corpus
from xdistil.distill.data import DistillData, distill_data, predict_rows, rows_gold
from xdistil.distill.runner import Trained
from xdistil.evaluation.latency import measure_latency
from xdistil.evaluation.metrics import loyalty
from xdistil.runfolder import RunFolder
from xdistil.student.base import Student
from xdistil.student.inputs import batch_inputs
from xdistil.student.vocab import PrunedVocab
from xdistil.teacher.inference import pad_teacher
from xdistil.teacher.models import count_parameters
from xdistil.teacher.store import Teacher
from xdistil.transfer.cache import CacheRows, TransferCache


class TestScorer(Protocol):
    """What evaluation asks of the task (`tasks.base.Task` is one): its test metrics and the figure they compare."""

    primary_metric: str

    def metrics(self, predicted: np.ndarray, split, label_names: list[str]) -> dict: ...


@dataclass
class Finished:
    """Everything the evaluation of a finished run reads."""

    config: RunConfig
    task: TestScorer
    corpus: Corpus
    teacher: Teacher
    tokenizer: Any  # the teacher's
    vocab: PrunedVocab
    student: Trained
    baseline: Trained | None
    teacher_test: TransferCache  # the teacher's outputs on the test split, with its token ids
    test_cache: TransferCache  # the same rows as the student reads them
    folder: RunFolder
    device: torch.device
    transfer: dict | None = None  # the transfer set's real, generated and labeled texts (TransferStream.sizes)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    @cached_property
    def test_rows(self) -> CacheRows:
        return self.test_cache.load()

    @cached_property
    def test(self) -> DistillData:
        """Student inputs, teacher outputs and gold labels of the test split."""
        return distill_data(self.test_rows, self.vocab, rows_gold(self.corpus.test.labels, self.test_rows, 0))


def _size_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 2)


def latency(run: Finished, student: Student) -> dict[str, dict[str, dict[str, float]]]:
    """Teacher and student on the same test batches (teacher token ids), same process and threads, on the CPU."""
    config = run.config.evaluation
    teacher = run.teacher.model.to("cpu").eval()
    student = student.to("cpu").eval()
    teacher_input_ids, student_ids = run.teacher_test.load().ids, run.test.ids
    result: dict[str, dict[str, dict[str, float]]] = {"teacher": {}, "student": {}}
    for size in config.latency_batch_sizes:
        rows = [[(b * size + i) % len(teacher_input_ids) for i in range(size)] for b in range(config.latency_repeats)]
        teacher_batches = [pad_teacher([teacher_input_ids[i] for i in b], run.pad_id) for b in rows]
        student_batches = [batch_inputs([student_ids[i] for i in b], run.vocab.pad_id) for b in rows]
        result["teacher"][f"batch_{size}"] = measure_latency(lambda b: teacher(**b), teacher_batches, size)
        result["student"][f"batch_{size}"] = measure_latency(student, student_batches, size)
    run.teacher.model.to(run.device)
    return result


def quality(run: Finished, logits: np.ndarray) -> dict:
    """Test metrics of logits (per example or per word) and their loyalty to the teacher's."""
    metrics = run.task.metrics(logits.argmax(1), run.corpus.test, run.corpus.label_names)
    agreement = loyalty(logits, run.test.teacher_logits)
    return {**metrics, "loyalty": agreement["label"], "probability_loyalty": agreement["probability"]}


def _speed(timings: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        "latency_ms": {k: v["median_ms"] for k, v in timings.items()},
        "examples_per_s": {k: v["examples_per_s"] for k, v in timings.items()},
    }


def run_metrics(run: Finished) -> dict:
    """Every figure of metrics.json but the step timings, with `evaluation.threads` CPU threads."""
    threads, before = run.config.evaluation.threads or torch.get_num_threads(), torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _metrics(run, threads)
    finally:
        torch.set_num_threads(before)


def member_quality(run: Finished, student_logits: np.ndarray) -> list[dict]:
    """Each teacher of an ensemble on the test split alone (teacher.model first), and the student's loyalty to it."""
    from xdistil.transfer.labelers import member_figures
    from xdistil.teacher.inference import resolve_layer
    from xdistil.teacher.models import resolve_pooling
    from xdistil.transfer.cache import AnnotationSpec

    config, corpus = run.config, run.corpus
    spec = AnnotationSpec.from_config(config, resolve_layer(run.teacher.model, None), resolve_pooling(config.teacher.model, config.teacher.pooling))
    out = []
    for who, logits in member_figures(config, run.teacher, run.tokenizer, run.task, corpus.label_names, corpus.test, spec):
        agreement = loyalty(student_logits, logits)
        out.append({**who, **run.task.metrics(logits.argmax(1), corpus.test, corpus.label_names),
                    "student_loyalty": agreement["label"], "student_probability_loyalty": agreement["probability"]})
    return out


def transfer_counts(sizes: dict) -> dict:
    """metrics.json's extra transfer-set counts: texts made by augmentation, and those a labeling budget labeled."""
    counts = {"transfer_generated": sizes.get("generated", 0)} if sizes.get("generated") else {}
    if sizes and sizes["labeled"] != sizes["real"] + sizes["generated"]:
        counts["transfer_labeled"] = sizes["labeled"]
    return counts


def _metrics(run: Finished, threads: int) -> dict:
    config, corpus, student = run.config, run.corpus, run.student.model
    student_logits = np.concatenate(predict_rows(student, run.test, run.device))
    student_quality = quality(run, student_logits)
    baseline = run.baseline.model if run.baseline is not None else None
    baseline_quality = quality(run, np.concatenate(predict_rows(baseline, run.test, run.device))) if baseline else None
    timings = latency(run, student)  # last: it moves the student to the CPU
    teacher_model = run.teacher.model
    teacher_params = count_parameters(teacher_model)
    teacher_quality = run.task.metrics(run.test.teacher_logits.argmax(1), corpus.test, corpus.label_names)
    if run.teacher.members:  # an ensemble: the test figures above are the combination's; each teacher's own, and loyalty to each
        teacher_quality["members"] = member_quality(run, student_logits)
    student_params = count_parameters(student)
    metrics: dict = {
        "task": config.task,
        "run": {
            "name": run.folder.root.name,
            "teacher": config.teacher.model,
            # labels from outside the process: the `teacher` figures are then those labels', size and speed the reference encoder's
            "labels": f"{config.teacher.source} {config.teacher.labels or config.teacher.function}" if config.teacher.external else None,
            "student_arch": config.student.arch,
            "threads": threads,
            "device": str(run.device),
            "quick": config.quick,
        },
        "data": {**corpus.sizes(), **transfer_counts(run.transfer or {})},
        "teacher": {
            **teacher_quality,
            "params": teacher_params,
            "params_without_embeddings": teacher_params - teacher_model.get_input_embeddings().weight.numel(),
            "size_mb": _size_mb(run.folder.teacher / "model.safetensors"),
            **_speed(timings["teacher"]),
        },
        "student": {
            **student_quality,
            "params": student_params,
            "params_without_embeddings": student_params - sum(p.numel() for p in student.embedding_parameters()),
            "size_mb": _size_mb(run.folder.student / "model.safetensors"),
            **_speed(timings["student"]),
            "vocab_size": len(run.vocab),
        },
    }
    if baseline is not None:
        metrics["baseline_no_distillation"] = {**baseline_quality, "params": count_parameters(baseline)}
    metrics["compression"] = teacher_params / student_params
    primary = run.task.primary_metric
    metrics["primary_metric"] = primary
    metrics["retention"] = metrics["student"][primary] / max(metrics["teacher"][primary], 1e-12)
    for size in config.evaluation.latency_batch_sizes:
        key = f"batch_{size}"
        metrics[f"speedup_batch_{size}"] = metrics["teacher"]["latency_ms"][key] / metrics["student"]["latency_ms"][key]
    metrics["stages"] = {
        "teacher": [h.to_dict() for h in run.teacher.history],
        "student": [h.to_dict() for h in run.student.histories],
        "baseline": [h.to_dict() for h in run.baseline.histories] if run.baseline else [],
    }
    return metrics
