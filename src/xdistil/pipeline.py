"""The whole job as one chain of cached steps: data -> teacher -> transfer set -> student -> evaluation -> export.

Each step keeps its result in the run folder, tagged with a fingerprint of everything it depends on,
so re-running the same config resumes where a killed run stopped, and a changed config redoes only
the steps whose inputs changed (the log says which, and why). Each step returns what it made. What differs between tasks is
asked of the task object (`tasks/`), what differs between students of the student family (`student/`).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

import xdistil.distributed as distributed
from xdistil.checks import check_before_running
from xdistil.config import RunConfig, absolute_paths, config_to_dict
from xdistil.cpus import ThreadWatch, cpu_budget
from xdistil.data.corpus import Corpus
from xdistil.distill.runner import StageCheckpoints, StageData, Trained, TrainSetup, run_stages, stage_data
from xdistil.distill.stages import Stage, expand_stages, gold_only
from xdistil.errors import XDistilError
from xdistil.evaluation.results import write_results
from xdistil.evaluation.summary import Finished, run_metrics
from xdistil.fingerprint import fingerprint
from xdistil.loop import StageHistory
from xdistil.progress import enter_step, log
from xdistil.runfolder import ANNOTATION_KEYS, ANNOTATION_ONLY, STUDENT_KEYS, TEACHER_KEYS, RunFolder, prepare_folder, record_data, step_reason
from xdistil.student.base import Student, StudentContext
from xdistil.student.io import save_student
from xdistil.student.registry import family
from xdistil.student.vocab import PrunedVocab
from xdistil.tasks import get_task
from xdistil.text import same_tokenization
from xdistil.teacher.inference import resolve_layer
from xdistil.teacher.precision import at_precision
from xdistil.teacher.models import load_tokenizer, resolve_pooling, teacher_label_order
from xdistil.teacher.store import Teacher, load_or_finetune
from xdistil.transfer.cache import Annotation, AnnotationSpec, TransferCache, annotate_parts, student_token_caches
from xdistil.transfer.ray_engine import annotation_engine
from xdistil.transfer.stream import TransferStream

STEPS = ("finetune", "annotate", "distill", "evaluate")


@dataclass
class Data:
    """The corpus and the fingerprint of everything in it."""

    corpus: Corpus
    fingerprint: str


class Run:
    """One run folder. Properties compute a step on first use, or load it when the folder already has it."""

    def __init__(self, config: RunConfig, overwrite: bool = False):
        self.config = config = absolute_paths(config, Path.cwd())  # the saved config reproduces the run from any directory
        self.threads = ThreadWatch.start(cpu_budget(), config.threads, distributed.launched(), torch.set_num_threads)
        self.out, self.task = Path(config.out), get_task(config.task)
        self.folder = RunFolder(self.out)
        check_before_running(config)  # before the folder is touched: a config that cannot run leaves nothing behind
        # under `accelerate launch`/`torchrun` this joins the other processes (gloo on CPUs): see distributed.py
        cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
        self.accelerator = Accelerator(cpu=cpu, mixed_precision=config.mixed_precision)
        # the main process holds the folder's lock until run() returns, close(), or the Run is gone; the others get the previous config
        locks: list = []
        self.previous = distributed.on_main(lambda: prepare_folder(self.out, config, overwrite, keep_lock=locks.append))
        self.close = weakref.finalize(self, locks[0].release) if locks else lambda: None
        set_seed(config.seed)
        self.student_seed = config.seed if config.distill.seed is None else config.distill.seed  # students' initialisation, batch order
        self.timings: dict[str, float] = {}

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
        distributed.on_main(lambda: record_data(self.out, data_fp, corpus, self.config.data.transfer_overlap))
        return Data(corpus, data_fp)

    @cached_property
    def tokenizer(self):
        return load_tokenizer(self.config.teacher.model)

    # ---- teacher ----
    @cached_property
    def teacher(self) -> Teacher:
        config, corpus, started = self.config, self.data.corpus, time.perf_counter()
        enter_step("teacher fine-tuning")
        self.threads.say(torch.get_num_threads(), log)
        teacher_fp = fingerprint(config.teacher.model_dump(mode="json", exclude=set(ANNOTATION_ONLY)), self.data.fingerprint, config.seed)

        def finetune(model: torch.nn.Module) -> StageHistory:
            log(f"teacher: fine-tuning {config.teacher.model} on {len(corpus.train):,} labeled examples")
            return self.task.finetune(model, self.tokenizer, corpus, config.teacher, self.accelerator, config.seed)

        teacher = load_or_finetune(self.folder.teacher, teacher_fp, config.teacher, corpus.label_names, self.task.teacher_class,
                                   self.tokenizer, self.accelerator.device, finetune, why=lambda: self._why(TEACHER_KEYS))
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
            annotator_model, self.tokenizer, self.transfer.parts(), self.folder.cache, spec, teacher.fingerprint, self.task.annotator,
            label_order, self.task.long_text, changed=self._why(ANNOTATION_KEYS),
            engine=annotation_engine(config.transfer, self.folder.teacher, self.task.teacher_class),
        )
        self._timed("annotate", started)
        return annotation

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
        return student_token_caches(caches, tokenizer, self.transfer.parts(), self.folder.student_tokens,
                                    AnnotationSpec.from_config(self.config, None, None), self.task)

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
        corpus = self.data.corpus
        return stage_data(self.inputs["transfer"], self.inputs["dev"], self.vocab, corpus.train.labels, corpus.dev.labels, self.config.distill,
                          self.student_seed, self.tokenizer.pad_token_id,
                          lambda predicted: self.task.score(predicted, corpus.dev, corpus.label_names), self.task.score_name)

    def _train(self, name: str, stages: list[Stage]) -> Trained:
        data = self.stage_data
        enter_step("distillation" if name == "student" else f"{name} training")
        self.threads.check(torch.get_num_threads(), log)
        model = self.new_student()
        config = self.config
        fp = fingerprint(
            name, self.inputs["transfer"].manifest["fingerprint"], len(self.vocab), config.student.model_dump(mode="json"),
            config.distill.model_dump(mode="json"), [s.__dict__ for s in stages], self.student_seed,
        )
        checkpoints = StageCheckpoints(self.folder.stage_checkpoints(name), fp)
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
        distributed.on_main(lambda: save_student(self.folder.student, trained.model, self.student_tokenizer, self.vocab,
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
        """metrics.json, report.md and the student's card for the finished run."""
        student, baseline = self.student, self.baseline if self.config.evaluation.baseline else None
        started, corpus = time.perf_counter(), self.data.corpus
        enter_step("evaluation")
        finished = Finished(
            config=self.config, task=self.task, corpus=corpus, teacher=self.teacher, pad_id=self.tokenizer.pad_token_id, vocab=self.vocab,
            student=student, baseline=baseline, teacher_test=self.annotation.caches["test"], test_cache=self.inputs["test"],
            folder=self.folder, device=self.accelerator.device,
        )
        metrics = run_metrics(finished)
        self._timed("evaluate", started)
        curves = {"teacher": self.teacher.history, "student": student.histories, "baseline": baseline.histories if baseline else []}
        return write_results(self.folder, {**metrics, "seconds": self.timings}, curves, config_to_dict(self.config), corpus.label_names,
                             corpus.notes + self.annotation.notes)

    def run(self, until: str = "evaluate") -> dict | None:
        """Run the steps up to and including `until`; earlier finished steps are loaded, not redone."""
        if until not in STEPS:
            raise XDistilError(f"unknown step '{until}'; expected one of {', '.join(STEPS)}")
        try:
            students = lambda: (self.student, self.baseline if self.config.evaluation.baseline else None)  # noqa: E731
            for step, make in zip(STEPS, (lambda: self.teacher, lambda: self.inputs, students)):
                make()
                if step == until:
                    return None
            return distributed.on_main(self.evaluate)  # the other processes' share ends with training
        finally:
            self.close()  # the run folder's lock: another process may run in it now
