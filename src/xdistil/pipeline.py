"""The whole job as one chain of cached steps: data -> teacher -> transfer set -> student -> evaluation -> export.

Each step keeps its result in the run folder, tagged with a fingerprint of everything it depends on,
so re-running the same config resumes where a killed run stopped, and a changed config redoes only
the steps whose inputs changed (the log says which, and why). Each step returns what it made. What differs between tasks is
asked of the task object (`tasks/`), what differs between students of the student family (`student/`).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

import xdistil.distributed as distributed
from xdistil.checks import check_before_running
from xdistil.config import RunConfig, TeacherConfig, absolute_paths, config_to_dict
from xdistil.cpus import affinity, busy_cpus, cpu_budget
from xdistil.data.corpus import Corpus
from xdistil.distill.data import TransferBatches, cached_data, warn_if_constant
from xdistil.distill.losses import needs_teacher
from xdistil.distill.runner import StageCheckpoints, StageData, Trained, TrainSetup, run_stages
from xdistil.distill.stages import Stage, expand_stages, gold_only
from xdistil.errors import XDistilError
from xdistil.evaluation.card import write_card
from xdistil.evaluation.report import write_report
from xdistil.evaluation.summary import Finished, run_metrics
from xdistil.fingerprint import fingerprint
from xdistil.loop import StageHistory
from xdistil.progress import enter_step, log
from xdistil.runfolder import prepare_folder, record_data, step_reason
from xdistil.atomic import atomic_write_json
from xdistil.student.base import Student, StudentContext
from xdistil.student.io import save_student
from xdistil.student.registry import family
from xdistil.student.vocab import PrunedVocab
from xdistil.tasks import get_task
from xdistil.tasks.description import TOKENS_SUFFIX
from xdistil.text import same_tokenization, tokenization_rules
from xdistil.teacher.inference import resolve_layer
from xdistil.teacher.precision import at_precision
from xdistil.teacher.models import load_tokenizer, resolve_pooling, teacher_label_order
from xdistil.teacher.store import Teacher, load_or_finetune, saved_fingerprint
from xdistil.transfer.cache import Annotation, AnnotationSpec, PairedCache, TransferCache, annotate_parts
from xdistil.transfer.stream import TransferStream

STEPS = ("finetune", "annotate", "distill", "evaluate")
# teacher settings that only change what annotation extracts: not part of the fine-tuned teacher's identity
ANNOTATION_ONLY = ("layer", "pooling")
# the config keys each step reads, in the order a changed one is named in the log
TEACHER_KEYS = ("data", "seed", *(f"teacher.{k}" for k in TeacherConfig.model_fields if k not in ANNOTATION_ONLY))
ANNOTATION_KEYS = (*TEACHER_KEYS, *(f"teacher.{k}" for k in ANNOTATION_ONLY), "transfer")
STUDENT_KEYS = ("student", "distill", *ANNOTATION_KEYS)


@dataclass
class Data:
    """The corpus and the fingerprint of everything in it."""

    corpus: Corpus
    fingerprint: str


class Run:
    """One run folder. Properties compute a step on first use, or load it when the folder already has it."""

    def __init__(self, config: RunConfig, overwrite: bool = False):
        config = absolute_paths(config, Path.cwd())  # the saved config reproduces the run from any directory
        self.config = config
        self.cpus = cpu_budget()
        if config.threads or not distributed.launched():  # several processes on one machine keep torch's own default
            torch.set_num_threads(config.threads or self.cpus.threads)
        self.out = Path(config.out)
        self.task = get_task(config.task)
        check_before_running(config)  # before the folder is touched: a config that cannot run leaves nothing behind
        # under `accelerate launch`/`torchrun` this joins the other processes (gloo on CPUs): see distributed.py
        cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
        self.accelerator = Accelerator(cpu=cpu, mixed_precision=config.mixed_precision)
        # the main process holds the folder's lock from here until run() returns, close(), or the Run is gone
        locks = []

        def prepare() -> dict | None:
            prepared = prepare_folder(self.out, config, overwrite)
            locks.append(prepared.lock)  # the lock stays in this process: only the previous config goes to the others
            return prepared.previous

        self.previous = distributed.on_main(prepare)
        self.close = weakref.finalize(self, locks[0].release) if locks else lambda: None
        set_seed(config.seed)
        self.timings: dict[str, float] = {}
        self._warned = False  # the oversubscription warning is given once

    def _say_threads(self) -> None:
        """Log the thread count and why (the first step of every command calls it)."""
        threads = torch.get_num_threads()
        log(f"threads: {threads} torch thread{'s' * (threads > 1)} ("
            + ("set by the config's threads" if self.config.threads else self.cpus.reason) + ")")
        self._warn_if_oversubscribed()

    def _warn_if_oversubscribed(self) -> None:
        """Warn, once a run, when other processes keep this run's CPUs busy as a training step begins (sampled
        while this process waits; two runs started together are only seen once both train)."""
        if self._warned or distributed.launched():
            return
        threads, cores, busy = torch.get_num_threads(), len(affinity()), busy_cpus()
        if busy is not None and busy + threads > cores + 0.5:
            self._warned = True
            log(f"warning: the machine is oversubscribed: other processes keep about {busy:.1f} of this run's {cores} CPUs busy "
                f"beside its {threads} torch threads; every step may be many times slower (benchmarks/threads.py: two runs "
                "sharing 2 cores at 2 threads each took 3.5x-17x as long per epoch as one alone, at 1 thread each 1.3x-1.4x) - "
                "wait for them, or give each run its own cores (taskset -c, or threads: in the config)")

    def _why(self, keys: tuple[str, ...]) -> str:
        """Why a step is redone: the first changed config key it reads (see runfolder.step_reason)."""
        return step_reason(self.previous, config_to_dict(self.config), keys)

    def _timed(self, step: str, started: float) -> None:
        self.timings[step] = round(self.timings.get(step, 0.0) + time.perf_counter() - started, 2)

    # ---- data ----
    @cached_property
    def data(self) -> Data:
        enter_step("reading the data")
        corpus = self.task.load_corpus(self.config.data)
        data_fp = corpus.fingerprint(self.config.task)
        distributed.on_main(lambda: record_data(self.out, data_fp, {"sizes": corpus.sizes(), "labels": corpus.label_names, "notes": corpus.notes,
                                        "transfer_overlap": {"policy": self.config.data.transfer_overlap, "count": corpus.transfer.overlap_count}}))
        log(f"data: {', '.join(f'{k} {v:,}' for k, v in corpus.sizes().items())}; labels {corpus.label_names}")
        for note in corpus.notes:
            log(f"  {note}")
        return Data(corpus, data_fp)

    @cached_property
    def tokenizer(self):
        return load_tokenizer(self.config.teacher.model)

    # ---- teacher ----
    @cached_property
    def teacher(self) -> Teacher:
        config, corpus, started = self.config, self.data.corpus, time.perf_counter()
        enter_step("teacher fine-tuning")
        self._say_threads()
        settings = config.teacher.model_dump(mode="json", exclude=set(ANNOTATION_ONLY))
        teacher_fp = fingerprint(settings, self.data.fingerprint, config.seed)

        def finetune(model: torch.nn.Module) -> StageHistory:
            log(f"teacher: fine-tuning {config.teacher.model} on {len(corpus.train):,} labeled examples")
            return self.task.finetune(model, self.tokenizer, corpus, config.teacher, self.accelerator, config.seed)

        if saved_fingerprint(self.out / "teacher") not in (None, teacher_fp):
            log(f"teacher: redone ({self._why(TEACHER_KEYS)})")
        teacher = load_or_finetune(
            self.out / "teacher", teacher_fp, config.teacher, corpus.label_names, self.task.teacher_class, self.tokenizer,
            self.accelerator.device, finetune,
        )
        self._timed("finetune", started)
        return teacher

    # ---- transfer set ----
    @cached_property
    def transfer(self) -> TransferStream:
        """Train texts, then the unlabeled transfer set and its augmentations, as the task reads them."""
        config = self.config
        return TransferStream(
            self.data.corpus, config.transfer.augment, config.seed, lambda: self.tokenizer.mask_token or "[MASK]",
            lambda texts: self.task.unlabeled(texts, config.data), self.task.unlabeled_settings(config.data),
        )

    @cached_property
    def annotation(self) -> Annotation:
        started = time.perf_counter()
        teacher, config = self.teacher, self.config
        enter_step("annotation")
        layer = resolve_layer(teacher.model, config.teacher.layer)
        spec = AnnotationSpec.from_config(config, layer, resolve_pooling(config.teacher.model, config.teacher.pooling))
        label_order = teacher_label_order(teacher.model, self.data.corpus.label_names)
        annotator_model = at_precision(teacher.model, config.transfer.teacher_precision)  # a converted copy, or the teacher
        annotation = annotate_parts(
            annotator_model, self.tokenizer, self.transfer.parts(), self.out / "cache", spec, teacher.fingerprint, self.task.annotator,
            label_order, self.task.long_text, changed=self._why(ANNOTATION_KEYS), engine=self.engine,
        )
        self._timed("annotate", started)
        return annotation

    @property
    def engine(self):
        """Who annotates: None for this process (or each of several), else the Ray engine."""
        transfer = self.config.transfer
        if transfer.engine == "ray":
            from xdistil.transfer.ray_engine import TeacherSource, ray_engine

            return ray_engine(transfer.ray, TeacherSource(str(self.out / "teacher"), self.task.teacher_class, transfer.teacher_precision))
        return None

    @cached_property
    def student_tokenizer(self):
        settings = self.config.student
        return load_tokenizer(family(settings.arch).tokenizer_source(settings, self.config.teacher.model))

    @cached_property
    def inputs(self) -> dict[str, TransferCache]:
        """The caches the student reads: the teacher's, paired with the student's own token ids of the
        same texts when the student reads them with another tokenizer."""
        caches, tokenizer = self.annotation.caches, self.student_tokenizer
        if same_tokenization(tokenizer, self.tokenizer):
            return caches
        spec = replace(AnnotationSpec.from_config(self.config, None, None), task=self.task.name + TOKENS_SUFFIX, precision="fp32")
        fp = fingerprint(tokenization_rules(tokenizer))  # one token cache per student tokenizer
        tokens = annotate_parts(None, tokenizer, self.transfer.parts(), self.out / "cache" / f"student-{fp}", spec, fp,
                                self.task.token_annotator, None, self.task.long_text, who="student tokens")
        return {name: PairedCache(caches[name], tokens.caches[name]) for name in caches}

    # ---- student ----
    @cached_property
    def vocab(self) -> PrunedVocab:
        tok = self.student_tokenizer
        counts = self.inputs["transfer"].token_counts(len(tok))
        vocab = PrunedVocab.from_counts(counts, tok.all_special_ids, tok.unk_token_id, tok.pad_token_id, self.config.student.min_count)
        log(f"student vocabulary: {len(vocab):,} of its tokenizer's {len(tok):,} word pieces")
        return vocab

    def new_student(self) -> Student:
        """A fresh student of the configured family, the same for the same seed."""
        settings = self.config.student
        context = StudentContext(self.vocab, len(self.data.corpus.label_names), self.task.per_word, self.teacher.model)
        torch.manual_seed(self.student_seed)
        return family(settings.arch).build(settings, context).to(self.accelerator.device)

    @cached_property
    def stage_data(self) -> StageData:
        """The transfer set streams from its cache; the labeled rows (its first rows) and dev are small, in memory."""
        caches, vocab, corpus = self.inputs, self.vocab, self.data.corpus
        labels = corpus.train.labels
        warn_if_constant(caches["transfer"])
        limit, distill = self.config.distill.transfer_limit, self.config.distill  # the labeled rows plus the first `limit` others
        rows = None if limit is None else len(labels) + limit
        pad = self.tokenizer.pad_token_id if needs_teacher({n for s in distill.stages for n in s.losses}) else None  # teacher inputs too
        transfer = TransferBatches(caches["transfer"], vocab, labels, distill.batch_size, self.student_seed, rows, teacher_pad=pad)
        return StageData(
            train={"transfer": transfer, "labeled": cached_data(caches["transfer"], vocab, labels, len(labels), pad)},
            dev=cached_data(caches["dev"], vocab, corpus.dev.labels, teacher_pad=pad),
            dev_score=lambda predicted: self.task.score(predicted, corpus.dev, corpus.label_names),
            score_name=self.task.score_name,
        )

    @property
    def student_seed(self) -> int:
        """The seed of the students' initialisation and batch order (distill.seed, else the run's)."""
        seed = self.config.distill.seed
        return self.config.seed if seed is None else seed

    def _train(self, name: str, stages: list[Stage]) -> Trained:
        data = self.stage_data
        enter_step("distillation" if name == "student" else f"{name} training")
        self._warn_if_oversubscribed()
        model = self.new_student()
        config = self.config
        fp = fingerprint(
            name, self.inputs["transfer"].manifest["fingerprint"], len(self.vocab), config.student.model_dump(mode="json"),
            config.distill.model_dump(mode="json"), [s.__dict__ for s in stages], self.student_seed,
        )
        checkpoints = StageCheckpoints(self.out / "checkpoints" / name, fp)
        stale = checkpoints.discard_stale()
        if stale:
            log(f"{name}: redone ({self._why(STUDENT_KEYS)}); {stale} finished stage(s) of the earlier config discarded")
        setup = TrainSetup(config.distill, self.accelerator, self.student_seed, self.teacher.model.config.hidden_size, self.teacher.model)
        return Trained(model, run_stages(model, stages, data, setup, checkpoints))

    @cached_property
    def student(self) -> Trained:
        started = time.perf_counter()
        trained = self._train("student", expand_stages(self.config.distill, self.config.student.layer_groups()))
        corpus = self.data.corpus
        distributed.on_main(lambda: save_student(self.out / "student", trained.model, self.student_tokenizer, self.vocab,
                                                 corpus.label_names, self.config.teacher.max_length, self.task.name))
        self._timed("distill", started)
        return trained

    @cached_property
    def baseline(self) -> Trained:
        """The same student trained on the gold labels alone: what distillation adds is measured against it."""
        started, config = time.perf_counter(), self.config
        trained = self._train("baseline", [gold_only(config.student.layer_groups(), config.evaluation.baseline_epochs, config.distill.lr)])
        self._timed("baseline", started)
        return trained

    # ---- evaluation ----
    def evaluate(self) -> dict:
        """metrics.json and report.md for the finished run."""
        student = self.student
        baseline = self.baseline if self.config.evaluation.baseline else None
        started = time.perf_counter()
        enter_step("evaluation")
        corpus = self.data.corpus
        finished = Finished(
            self.config, self.task, corpus, self.teacher, self.tokenizer.pad_token_id, self.vocab, student, baseline,
            self.annotation.caches["test"], self.inputs["test"], self.out, self.accelerator.device,
        )
        metrics = run_metrics(finished)
        self._timed("evaluate", started)
        metrics["seconds"] = self.timings
        atomic_write_json(self.out / "metrics.json", metrics)
        curves = {"teacher": self.teacher.history, "student": student.histories, "baseline": baseline.histories if baseline else []}
        report = write_report(self.out, metrics, curves, corpus.notes + self.annotation.notes)
        write_card(self.out / "student", metrics, config_to_dict(self.config), corpus.label_names, corpus.notes + self.annotation.notes)
        log(f"wrote {self.out / 'metrics.json'} and {report}")
        return metrics

    def run(self, until: str = "evaluate") -> dict | None:
        """Run the steps up to and including `until`; earlier finished steps are loaded, not redone."""
        if until not in STEPS:
            raise XDistilError(f"unknown step '{until}'; expected one of {', '.join(STEPS)}")
        try:
            for step, make in zip(STEPS, (lambda: self.teacher, lambda: self.inputs, self._students)):
                make()
                if step == until:
                    return None
            return distributed.on_main(self.evaluate)  # the other processes' share ends with training
        finally:
            self.close()  # the run folder's lock: another process may run in it now

    def _students(self) -> None:
        """The distilled student and, when evaluation compares against it, the no-distillation baseline."""
        _ = self.student, self.baseline if self.config.evaluation.baseline else None
