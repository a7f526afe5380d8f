"""The whole job as one chain of cached steps: data -> teacher -> transfer set -> student -> evaluation -> export.

Each step keeps its result in the run folder, tagged with a fingerprint of everything it depends on,
so re-running the same config resumes where a killed run stopped, and a run folder is never reused
for another config or other data.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed

from xdistil.batching import sorted_batches
from xdistil.config import RunConfig, config_to_dict, save_config
from xdistil.data.corpus import Corpus, load_corpus, load_tagged_corpus
from xdistil.data.tagging import pretokenize
from xdistil.distill.runner import (
    DistillData,
    StageCheckpoints,
    TransferBatches,
    cached_data,
    distill_data,
    rows_gold,
    run_stages,
    student_forward,
)
from xdistil.distill.stages import Stage, expand_stages
from xdistil.errors import XDistilError
from xdistil.evaluation.latency import measure_latency
from xdistil.evaluation.metrics import classification_metrics, loyalty, tagging_metrics
from xdistil.evaluation.report import write_report
from xdistil.fingerprint import fingerprint, texts_fingerprint
from xdistil.loop import StageHistory
from xdistil.progress import log
from xdistil.student.bilstm import BiLSTMConfig, BiLSTMStudent
from xdistil.student.embeddings import pca_compress
from xdistil.student.inputs import pad_batch
from xdistil.student.io import save_student
from xdistil.student.vocab import PrunedVocab
from xdistil.teacher.finetune import finetune_tagger, finetune_teacher
from xdistil.teacher.inference import pad_teacher, resolve_layer
from xdistil.teacher.models import (
    count_parameters,
    load_classifier,
    load_tokenizer,
    model_class,
    resolve_pooling,
    resolve_teacher,
    teacher_label_order,
)
from xdistil.transfer.augment import WordPool, augment_stream
from xdistil.transfer.cache import AnnotationSpec, TransferCache, annotate, atomic_write_json

STEPS = ("finetune", "annotate", "distill", "evaluate")
TEACHER_MARKER = "xdistil_teacher.json"


def _first_difference(old: object, new: object, prefix: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            found = _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if old == new else f"{prefix.rstrip('.')}: {old!r} -> {new!r}"


def _warn_if_constant(reps: np.ndarray, spec: dict) -> None:
    """Say so when the teacher representation barely varies across texts: the representation loss then teaches little."""
    sample = reps[:5000].astype(np.float32)
    spread = float(sample.var(axis=0).mean())
    scale = float((sample**2).mean()) or 1.0
    if spread < 1e-3 * scale:
        log(
            f"warning: the teacher representation (layer {spec['layer']}, "
            f"pooling '{spec['pooling']}') is nearly the same for every text (variance {spread:.1e} vs mean square {scale:.1e}); "
            f"the representation stage will teach little - try teacher.pooling: mean or another teacher.layer"
        )


class Run:
    """One run folder. Properties compute a step on first use, or load it when the folder already has it."""

    def __init__(self, config: RunConfig, overwrite: bool = False):
        self.config = config
        self.out = Path(config.out)
        self._prepare_folder(overwrite)
        set_seed(config.seed)
        self.accelerator = Accelerator(cpu=config.device == "cpu", mixed_precision=config.mixed_precision)
        self.timings: dict[str, float] = {}
        self.tagging = config.task == "tagging"

    def _prepare_folder(self, overwrite: bool) -> None:
        saved = self.out / "config.yaml"
        current = config_to_dict(self.config)
        # only finished work is protected: a run that failed before any step may be re-run with a corrected config
        has_work = any((self.out / name).exists() for name in ("teacher", "cache", "checkpoints", "student"))
        if saved.is_file() and has_work and not overwrite:
            old = yaml.safe_load(saved.read_text(encoding="utf-8"))
            difference = _first_difference(old, current)
            if difference:
                raise XDistilError(
                    f"{self.out}: holds a run with another config ({difference}); choose another --out or pass --overwrite"
                )
        elif overwrite and self.out.exists():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        save_config(self.config, saved)

    def _timed(self, step: str, started: float) -> None:
        self.timings[step] = round(self.timings.get(step, 0.0) + time.perf_counter() - started, 2)

    # ---- data ----
    @cached_property
    def corpus(self) -> Corpus:
        corpus = load_tagged_corpus(self.config.data) if self.tagging else load_corpus(self.config.data)
        data_fp = fingerprint(
            self.config.task,
            corpus.label_names,
            [texts_fingerprint(t) for t in (corpus.train.texts, corpus.dev.texts, corpus.test.texts)] + [corpus.transfer.scan()[1]],
            corpus.train.labels, corpus.dev.labels, corpus.test.labels,
            [corpus.train.langs, corpus.dev.langs, corpus.test.langs],
        )
        path = self.out / "data.json"
        if path.is_file() and (self.out / "teacher").exists():
            old = json.loads(path.read_text(encoding="utf-8"))
            if old.get("fingerprint") != data_fp:
                raise XDistilError(f"{self.out}: the data files changed since this run folder was made; use another --out or --overwrite")
        atomic_write_json(path, {"fingerprint": data_fp, "sizes": corpus.sizes(), "labels": corpus.label_names, "notes": corpus.notes})
        self.data_fingerprint = data_fp
        sizes = ", ".join(f"{k} {v:,}" for k, v in corpus.sizes().items())
        log(f"data: {sizes}; labels {corpus.label_names}")
        for note in corpus.notes:
            log(f"  {note}")
        return corpus

    @cached_property
    def tokenizer(self):
        return load_tokenizer(self.config.teacher.model)

    # ---- teacher ----
    @cached_property
    def teacher_fingerprint(self) -> str:
        _ = self.corpus
        # layer and pooling only change what annotation extracts, so they are not part of the teacher's identity
        settings = self.config.teacher.model_dump(mode="json", exclude={"layer", "pooling"})
        return fingerprint(settings, self.data_fingerprint, self.config.seed)

    @cached_property
    def teacher(self) -> torch.nn.Module:
        folder = self.out / "teacher"
        marker = folder / TEACHER_MARKER
        if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")).get("fingerprint") == self.teacher_fingerprint:
            log(f"teacher: loaded the fine-tuned teacher from {folder}")
            self.teacher_history = [StageHistory.from_dict(h) for h in json.loads(marker.read_text(encoding="utf-8"))["history"]]
            return model_class(self.config.task).from_pretrained(str(folder)).to(self.accelerator.device).eval()
        started = time.perf_counter()
        config = self.config.teacher
        model = load_classifier(config.model, self.corpus.label_names, require_labels=not config.finetune, task=self.config.task)
        model.to(self.accelerator.device)
        self.teacher_history = []
        if config.finetune:
            log(f"teacher: fine-tuning {config.model} on {len(self.corpus.train):,} labeled examples")
            corpus, seed = self.corpus, self.config.seed
            if self.tagging:
                history = finetune_tagger(model, self.tokenizer, corpus.train, corpus.dev, corpus.label_names, config, self.accelerator, seed)
            else:
                history = finetune_teacher(model, self.tokenizer, corpus.train, corpus.dev, config, self.accelerator, seed)
            self.teacher_history = [history]
        tmp = folder.with_name("teacher.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        self.tokenizer.save_pretrained(str(tmp))
        atomic_write_json(tmp / TEACHER_MARKER, {"fingerprint": self.teacher_fingerprint, "history": [h.to_dict() for h in self.teacher_history]})
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        self._timed("finetune", started)
        return model.eval()

    @cached_property
    def label_order(self) -> list[int]:
        return teacher_label_order(self.teacher, self.corpus.label_names)

    # ---- transfer set ----
    def transfer_stream(self) -> Iterator[str] | Iterator[list[str]]:
        """Train texts first (so gold labels line up with the first rows), then the unlabeled transfer
        set, then its augmentations: read lazily, never held in memory. Tagging streams word lists."""
        if self.tagging:
            kind = self.config.data.pretokenizer
            return itertools.chain(self.corpus.train.texts, (pretokenize(line, kind) for line in self.corpus.transfer))
        return itertools.chain(self.corpus.train.texts, self.corpus.transfer, self._augmented())

    def _augmented(self) -> Iterator[str]:
        """The augmented transfer texts, regenerated on each call (seeded, so always the same)."""
        augment = self.config.transfer.augment
        if not augment.factor:
            return iter(())
        mask = self.tokenizer.mask_token or "[MASK]"
        return augment_stream(self.corpus.transfer, augment, mask, self.config.seed, self.word_pool)

    @cached_property
    def word_pool(self) -> WordPool:
        return WordPool(self.corpus.transfer)

    @cached_property
    def transfer_count(self) -> tuple[int, str]:
        """(number of texts in the transfer stream, its fingerprint)."""
        corpus, augment = self.corpus, self.config.transfer.augment
        n_transfer, transfer_fp, _ = corpus.transfer.scan()
        count = len(corpus.train) + n_transfer
        if augment.factor:
            added = sum(1 for _ in self._augmented())
            log(f"augmentation: {added:,} new transfer texts from {n_transfer:,}")
            count += added
        fp = fingerprint(
            texts_fingerprint(corpus.train.texts), transfer_fp, augment.model_dump(mode="json"), self.config.seed,
            self.config.data.pretokenizer if self.tagging else None,
        )
        return count, fp

    @cached_property
    def caches(self) -> dict[str, TransferCache]:
        started = time.perf_counter()
        teacher, config = self.teacher, self.config
        spec = AnnotationSpec(
            max_length=config.teacher.max_length,
            batch_size=config.transfer.batch_size,
            chunk_size=config.transfer.chunk_size,
            layer=resolve_layer(teacher, config.teacher.layer),
            pooling=resolve_pooling(config.teacher.model, config.teacher.pooling),
            dtype=config.transfer.dtype,
            task=config.task,
        )
        count, transfer_fp = self.transfer_count
        parts = {
            "transfer": (self.transfer_stream(), count, transfer_fp),
            "dev": (self.corpus.dev.texts, len(self.corpus.dev), texts_fingerprint(self.corpus.dev.texts)),
            "test": (self.corpus.test.texts, len(self.corpus.test), texts_fingerprint(self.corpus.test.texts)),
        }
        caches = {}
        for name, (texts, n, texts_fp) in parts.items():
            fp = fingerprint(self.teacher_fingerprint, spec.__dict__, texts_fp)
            caches[name] = annotate(
                teacher, self.tokenizer, texts, n, self.out / "cache" / name, spec, fp, self.label_order, f"teacher labels {name}"
            )
            cut = caches[name].truncated()
            if cut:
                how = "split into teacher windows and stitched back" if self.tagging else "truncated"
                self.corpus.notes.append(f"{name}: {cut} texts longer than {spec.max_length} word pieces were {how}")
        self._timed("annotate", started)
        return caches

    # ---- student ----
    @cached_property
    def vocab(self) -> PrunedVocab:
        tok = self.tokenizer
        counts = self.caches["transfer"].token_counts(len(tok))
        vocab = PrunedVocab.from_counts(counts, tok.all_special_ids, tok.unk_token_id, tok.pad_token_id, self.config.student.min_count)
        log(f"student vocabulary: {len(vocab):,} of the teacher's {len(tok):,} word pieces")
        return vocab

    def new_student(self) -> BiLSTMStudent:
        """A fresh student, the same for the same seed: embeddings from the teacher's by PCA, or random."""
        config = self.config.student
        torch.manual_seed(self.student_seed)
        model = BiLSTMStudent(
            BiLSTMConfig(
                vocab_size=len(self.vocab),
                num_labels=len(self.corpus.label_names),
                emb_dim=config.emb_dim,
                hidden=config.hidden,
                layers=config.layers,
                dropout=config.dropout,
                dense_dim=config.dense_dim or self.teacher.config.hidden_size,
                pad_id=self.vocab.pad_id,
                tagging=self.tagging,
            )
        )
        if config.embedding_init == "teacher_pca":
            table = self.teacher.get_input_embeddings().weight.detach().cpu()[torch.as_tensor(self.vocab.teacher_ids)]
            with torch.no_grad():
                model.embedding.weight.copy_(pca_compress(table, config.emb_dim))
        return model.to(self.accelerator.device)

    @cached_property
    def distill_data(self) -> dict[str, DistillData | TransferBatches]:
        """The transfer set streams from its cache; the labeled rows (its first rows) and dev are small, in memory."""
        caches, vocab, labels = self.caches, self.vocab, self.corpus.train.labels
        _warn_if_constant(caches["transfer"].chunk(0).reps, caches["transfer"].manifest)
        return {
            "transfer": TransferBatches(
                caches["transfer"], vocab, labels, self.config.distill.batch_size, self.student_seed, self._transfer_rows()
            ),
            "labeled": cached_data(caches["transfer"], vocab, labels, stop=len(labels)),
            "dev": cached_data(caches["dev"], vocab, self.corpus.dev.labels),
        }

    @property
    def student_seed(self) -> int:
        """The seed of the students' initialisation and batch order (distill.seed, else the run's)."""
        seed = self.config.distill.seed
        return self.config.seed if seed is None else seed

    def _transfer_rows(self) -> int | None:
        """How many cache rows the transfer stages read: the labeled rows plus `distill.transfer_limit` unlabeled ones."""
        limit = self.config.distill.transfer_limit
        return None if limit is None else len(self.corpus.train) + limit

    def _train(self, name: str, stages: list[Stage]) -> tuple[BiLSTMStudent, list[StageHistory]]:
        data = self.distill_data
        model = self.new_student()
        fp = fingerprint(
            name,
            self.caches["transfer"].manifest["fingerprint"],
            len(self.vocab),
            self.config.student.model_dump(mode="json"),
            self.config.distill.model_dump(mode="json"),
            [s.__dict__ for s in stages],
            self.student_seed,
        )
        histories = run_stages(
            model, stages, data, data["dev"], self.config.distill, self.accelerator, self.student_seed,
            StageCheckpoints(self.out / "checkpoints" / name, fp), self.teacher.config.hidden_size,
            self._dev_f1 if self.tagging else None, "entity F1" if self.tagging else "accuracy",
        )
        return model, histories

    @cached_property
    def student(self) -> tuple[BiLSTMStudent, list[StageHistory]]:
        started = time.perf_counter()
        model, histories = self._train("student", expand_stages(self.config.distill))
        save_student(self.out / "student", model, self.tokenizer, self.vocab, self.corpus.label_names, self.config.teacher.max_length)
        self._timed("distill", started)
        return model, histories

    @cached_property
    def baseline(self) -> tuple[BiLSTMStudent, list[StageHistory]]:
        """The same student trained on the gold labels alone: what distillation adds is measured against it."""
        started = time.perf_counter()
        config = self.config
        stage = Stage(
            "gold only (no distillation)", {"gold": 1.0}, "labeled", ("output", "dense", "encoder", "embedding"),
            config.evaluation.baseline_epochs, config.distill.lr, "dev_score",
        )
        result = self._train("baseline", [stage])
        self._timed("baseline", started)
        return result

    def _dev_f1(self, predicted: list[np.ndarray]) -> float:
        """Entity F1 of per-word label indices on the dev sentences (the tagging stages' dev score)."""
        return self._tag_metrics(predicted, self.corpus.dev)["f1"]

    def _tag_metrics(self, predicted: list[np.ndarray], split) -> dict:
        names = self.corpus.label_names
        tags = [[names[i] for i in row] for row in predicted]
        gold = [[names[i] for i in row] for row in split.labels]
        return tagging_metrics(tags, gold, split.langs)

    # ---- evaluation ----
    @torch.inference_mode()
    def _student_logits(self, model: BiLSTMStudent, data: DistillData) -> np.ndarray:
        """Student logits in the data's order: one row per example, or per word for tagging."""
        model.eval()
        out: list[np.ndarray] = [np.empty(0)] * len(data)
        for indices in sorted_batches([len(x) for x in data.ids], 512):
            batch = {k: v.to(self.accelerator.device) for k, v in data.collate(indices).items()}
            logits = student_forward(model, batch).logits.float().cpu().numpy()
            words = batch["mask"].sum(1).tolist() if "mask" in batch else None
            for row, i in enumerate(indices):
                out[i] = logits[row, : words[row]] if words is not None else logits[row : row + 1]
        return np.concatenate(out)

    def _quality(self, logits: np.ndarray, test: DistillData) -> dict:
        """Test metrics of logits (per example or per word) and their loyalty to the teacher's."""
        split = self.corpus.test
        agreement = loyalty(logits, test.teacher_logits)
        if self.tagging:
            rows = np.split(logits.argmax(1), np.cumsum([len(s) for s in split.labels])[:-1])
            metrics = self._tag_metrics(rows, split)
        else:
            metrics = classification_metrics(logits.argmax(1), np.asarray(split.labels))
        return {**metrics, "loyalty": agreement["label"], "probability_loyalty": agreement["probability"]}

    def _latency(self, student: BiLSTMStudent, ids: list[np.ndarray]) -> dict[str, dict[str, dict[str, float]]]:
        """Teacher and student on the same test batches (teacher token ids), same process and threads, on the CPU."""
        config = self.config.evaluation
        teacher = self.teacher.to("cpu").eval()
        student = student.to("cpu").eval()
        result: dict[str, dict[str, dict[str, float]]] = {"teacher": {}, "student": {}}
        for size in config.latency_batch_sizes:
            count = config.latency_repeats
            batches = [[ids[(b * size + i) % len(ids)] for i in range(size)] for b in range(count)]
            teacher_batches = [pad_teacher(b, self.tokenizer.pad_token_id) for b in batches]
            student_batches = [pad_batch([self.vocab.encode(x) for x in b], self.vocab.pad_id) for b in batches]
            result["teacher"][f"batch_{size}"] = measure_latency(lambda b: teacher(**b), teacher_batches, size)
            result["student"][f"batch_{size}"] = measure_latency(lambda b: student(*b), student_batches, size)
        self.teacher.to(self.accelerator.device)
        return result

    def evaluate(self) -> dict:
        """metrics.json and report.md for the finished run."""
        student, histories = self.student
        baseline = self.baseline if self.config.evaluation.baseline else None
        started = time.perf_counter()
        corpus, config = self.corpus, self.config
        test_rows = self.caches["test"].load()
        teacher_ids = test_rows.ids
        test = distill_data(test_rows, self.vocab, rows_gold(corpus.test.labels, test_rows, 0))
        threads = config.evaluation.threads or torch.get_num_threads()
        torch.set_num_threads(threads)
        latency = self._latency(student, teacher_ids)

        def size_mb(path: Path) -> float:
            return round(path.stat().st_size / 1e6, 2)

        teacher_params = count_parameters(self.teacher)
        teacher_quality = self._quality(test.teacher_logits, test)
        for key in ("loyalty", "probability_loyalty"):
            teacher_quality.pop(key)
        metrics: dict = {
            "task": config.task,
            "run": {
                "name": self.out.name,
                "teacher": config.teacher.model,
                "student_arch": config.student.arch,
                "threads": threads,
                "device": str(self.accelerator.device),
            },
            "data": corpus.sizes(),
            "teacher": {
                **teacher_quality,
                "params": teacher_params,
                "params_without_embeddings": teacher_params - self.teacher.get_input_embeddings().weight.numel(),
                "size_mb": size_mb(self.out / "teacher" / "model.safetensors"),
                "latency_ms": {k: v["median_ms"] for k, v in latency["teacher"].items()},
                "examples_per_s": {k: v["examples_per_s"] for k, v in latency["teacher"].items()},
            },
            "student": {
                **self._quality(self._student_logits(student, test), test),
                "params": count_parameters(student),
                "params_without_embeddings": count_parameters(student) - student.embedding.weight.numel(),
                "size_mb": size_mb(self.out / "student" / "model.safetensors"),
                "latency_ms": {k: v["median_ms"] for k, v in latency["student"].items()},
                "examples_per_s": {k: v["examples_per_s"] for k, v in latency["student"].items()},
                "vocab_size": len(self.vocab),
            },
        }
        if baseline is not None:
            metrics["baseline_no_distillation"] = {
                **self._quality(self._student_logits(baseline[0], test), test),
                "params": count_parameters(baseline[0]),
            }
        metrics["compression"] = metrics["teacher"]["params"] / metrics["student"]["params"]
        primary = "f1" if self.tagging else "accuracy"
        metrics["primary_metric"] = primary
        metrics["retention"] = metrics["student"][primary] / max(metrics["teacher"][primary], 1e-12)
        for size in config.evaluation.latency_batch_sizes:
            metrics[f"speedup_batch_{size}"] = metrics["teacher"]["latency_ms"][f"batch_{size}"] / metrics["student"]["latency_ms"][f"batch_{size}"]
        metrics["stages"] = {
            "teacher": [h.to_dict() for h in getattr(self, "teacher_history", [])],
            "student": [h.to_dict() for h in histories],
            "baseline": [h.to_dict() for h in baseline[1]] if baseline else [],
        }
        self._timed("evaluate", started)
        metrics["seconds"] = self.timings
        atomic_write_json(self.out / "metrics.json", metrics)
        curves = {"teacher": getattr(self, "teacher_history", []), "student": histories, "baseline": baseline[1] if baseline else []}
        report = write_report(self.out, metrics, curves, corpus.notes)
        log(f"wrote {self.out / 'metrics.json'} and {report}")
        return metrics

    def run(self, until: str = "evaluate") -> dict | None:
        """Run the steps up to and including `until`; earlier finished steps are loaded, not redone."""
        if until not in STEPS:
            raise XDistilError(f"unknown step '{until}'; expected one of {', '.join(STEPS)}")
        resolve_teacher(self.config.teacher.model)  # a mistyped teacher fails before any data is read
        _ = self.teacher
        if until == "finetune":
            return None
        _ = self.caches
        if until == "annotate":
            return None
        _ = self.student
        if self.config.evaluation.baseline:
            _ = self.baseline
        if until == "distill":
            return None
        return self.evaluate()
