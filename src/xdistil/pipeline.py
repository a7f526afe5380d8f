"""The whole job as one chain of steps: data -> teacher -> transfer set -> student -> evaluation -> export.

Each step is a method that takes what it reads and returns what it made; `execute` calls them in order and names
what writes to the run folder at the call. A step keeps its result in the run folder, tagged with a fingerprint of
everything it depends on, so the same config resumes a killed run and a changed one redoes only the steps whose
inputs changed (the log says which, and why). Task differences live in `tasks/`, student differences in `student/`.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

import xdistil.distributed as distributed
from xdistil.checks import check_before_running
from xdistil.config import RunConfig, TeacherConfig, absolute_paths, config_to_dict
from xdistil.cpus import ThreadWatch, cpu_budget
from xdistil.data.corpus import Corpus
from xdistil.distill.runner import StageCheckpoints, StageData, Trained, TrainSetup, run_stages, stage_data
from xdistil.distill.stages import Stage, expand_stages, gold_only
from xdistil.errors import XDistilError
from xdistil.evaluation.results import write_results
from xdistil.evaluation.summary import Finished, run_metrics
from xdistil.evaluation.tracking import track_run
from xdistil.fingerprint import fingerprint
from xdistil.loop import StageHistory
from xdistil.progress import enter_step, log
from xdistil.runfolder import ANNOTATION_KEYS, STUDENT_KEYS, TEACHER_KEYS, RunFolder, prepare_folder, record_data, step_reason
from xdistil.student.base import Student, StudentContext
from xdistil.student.embeddings import EmbeddingSource
from xdistil.student.io import save_student
from xdistil.student.registry import family
from xdistil.student.vocab import PrunedVocab
from xdistil.tasks import get_task
from xdistil.text import same_tokenization
from xdistil.teacher.models import load_tokenizer
from xdistil.teacher.ensemble import finetune_members
from xdistil.teacher.store import Teacher, load_or_finetune
from xdistil.transfer.budget import label_first_round
from xdistil.transfer.cache import Annotation, AnnotationSpec, TransferCache, annotate_parts
from xdistil.transfer.labelers import run_labeler, student_token_caches
from xdistil.transfer.ray_engine import annotation_engine
from xdistil.transfer.stream import TransferStream

STEPS = ("finetune", "annotate", "distill", "evaluate")


@dataclass
class Data:
    """The corpus and the fingerprint of everything in it."""

    corpus: Corpus
    fingerprint: str


@dataclass
class RunOutputs:
    """What a run made, step by step (what benchmarks and tests read); a step not reached is None."""

    data: Data
    tokenizer: Any  # the teacher's
    teacher: Teacher
    transfer: TransferStream | None = None
    annotation: Annotation | None = None  # the teacher's caches
    student_caches: dict[str, TransferCache] | None = None  # the same rows with the student's token ids
    vocab: PrunedVocab | None = None
    student: Trained | None = None
    baseline: Trained | None = None  # the same student on the gold labels alone, when configured
    metrics: dict | None = None


class Run:
    """One run folder: its config, devices, lock and timings; the steps are its methods."""

    def __init__(self, config: RunConfig, overwrite: bool = False):
        self.config = config = absolute_paths(config, Path.cwd())  # the saved config reproduces the run from any directory
        self.threads = ThreadWatch.start(cpu_budget(), config.threads, distributed.launched(), torch.set_num_threads)
        self.out, self.task = Path(config.out), get_task(config.task)
        self.folder = RunFolder(self.out)
        check_before_running(config)  # before the folder is touched: a config that cannot run leaves nothing behind
        # under `accelerate launch`/`torchrun` this joins the other processes (gloo on CPUs): see distributed.py
        cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
        self.accelerator = Accelerator(cpu=cpu, mixed_precision=config.mixed_precision, log_with=config.tracking or None,
                                       project_dir=str(self.folder.tracking) if config.tracking else None)
        # the main process holds the folder's lock until execute() returns, close(), or the Run is gone; the others get the previous config
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
    def read_data(self) -> Data:
        enter_step("reading the data")
        corpus = self.task.load_corpus(self.config.data)
        return Data(corpus, corpus.fingerprint(self.config.task))

    def transfer_stream(self, corpus: Corpus, tokenizer, teacher: Teacher | None = None) -> TransferStream:
        """Train texts, then the unlabeled transfer set and its augmentations, as the task reads them."""
        return TransferStream.of(corpus, self.config, self.task, tokenizer, teacher and teacher.model, teacher.fingerprint if teacher else "")

    # ---- teacher ----
    def finetune(self, data: Data, tokenizer) -> Teacher:
        """The fine-tuned teacher (and an ensemble's further members), loaded from the run folder when made from the same config and data."""
        started = time.perf_counter()
        enter_step("teacher fine-tuning")
        self.threads.say(torch.get_num_threads(), log)
        teacher = self._teacher(data, self.config.teacher, tokenizer, self.config.seed, self.folder.teacher)
        teacher.members = finetune_members(self.config, self.folder.member, lambda *member: self._teacher(data, *member))
        self._timed("finetune", started)
        return teacher

    def _teacher(self, data: Data, settings: TeacherConfig, tokenizer, seed: int, folder: Path) -> Teacher:
        corpus, reference = data.corpus, (("reference encoder",) if settings.external else ())  # labels from outside: the model as it is
        teacher_fp = fingerprint(settings.training_settings(), data.fingerprint, seed, *reference)

        def finetune(model: torch.nn.Module) -> list[StageHistory]:
            log(f"teacher: fine-tuning {settings.model} on {len(corpus.train):,} labeled examples")
            return self.task.finetune(model, tokenizer, corpus, settings, self.accelerator, seed)

        return load_or_finetune(folder, teacher_fp, settings, corpus.label_names, self.task.teacher_class, tokenizer, self.accelerator.device,
                                finetune, why=lambda: self._why(TEACHER_KEYS))

    # ---- transfer set ----
    def annotate(self, data: Data, teacher: Teacher, tokenizer, stream: TransferStream) -> Annotation:
        """The labeler's outputs (the teacher's, by default) on every part of the transfer stream, chunk by chunk in the run folder's cache."""
        started, config = time.perf_counter(), self.config
        enter_step("annotation")
        labeler, spec = run_labeler(config, teacher, tokenizer, self.task, data.corpus.label_names, self.folder.teacher, stream)
        engine = annotation_engine(config.transfer)
        label_first_round(labeler, stream, self.folder.cache / "transfer", spec, engine)  # an uncertain budget's first round
        annotation = annotate_parts(labeler, stream.parts(), self.folder.cache, spec, self.task.long_text, changed=self._why(ANNOTATION_KEYS),
                                    engine=engine)
        distributed.on_main(lambda: stream.save_budget(self.folder.cache))
        self._timed("annotate", started)
        return annotation

    def student_inputs(self, caches: dict[str, TransferCache], tokenizer, student_tokenizer, stream: TransferStream) -> dict[str, TransferCache]:
        """The caches the student reads: the teacher's, paired with the student's own token ids of the
        same texts when the student reads them with another tokenizer."""
        if same_tokenization(student_tokenizer, tokenizer):
            return caches
        return student_token_caches(caches, student_tokenizer, stream.parts(), self.folder.student_tokens,
                                    AnnotationSpec.from_config(self.config, None, None), self.task)

    # ---- student ----
    def student_vocab(self, transfer: TransferCache, tokenizer) -> PrunedVocab:
        """The word pieces the transfer set uses at least `student.min_count` times, and the special ones."""
        return PrunedVocab.for_tokenizer(transfer.token_counts(len(tokenizer)), tokenizer, self.config.student.min_count)

    def new_student(self, vocab: PrunedVocab, label_count: int, teacher: Teacher, tokenizer) -> Student:
        """A fresh student of the configured family, the same for the same seed (`tokenizer`: the teacher's)."""
        settings = self.config.student
        embeddings = EmbeddingSource.of(teacher, tokenizer, self.config.teacher.model, self.folder.teacher / "piece-vectors")
        context = StudentContext(vocab, label_count, self.task.per_word, teacher.model, embeddings)
        torch.manual_seed(self.student_seed)
        return family(settings.arch).build(settings, context).to(self.accelerator.device)

    def stage_data(self, corpus: Corpus, caches: dict[str, TransferCache], vocab: PrunedVocab, pad_id: int) -> StageData:
        """What the stages train on and how dev is scored (`pad_id`: the teacher tokenizer's)."""
        return stage_data(caches["transfer"], caches["dev"], vocab, corpus.train.labels, corpus.dev.labels, self.config.distill,
                          self.student_seed, pad_id, lambda predicted: self.task.score(predicted, corpus.dev, corpus.label_names),
                          self.task.score_name)

    def train(self, name: str, stages: list[Stage], data: StageData, vocab: PrunedVocab, teacher: Teacher, label_count: int,
              transfer_fp: str, tokenizer) -> Trained:
        """A fresh student trained through `stages`, resuming from the stages a killed run of the same config finished."""
        enter_step("distillation" if name == "student" else f"{name} training")
        self.threads.check(torch.get_num_threads(), log)
        model = self.new_student(vocab, label_count, teacher, tokenizer)
        config = self.config
        fp = fingerprint(name, transfer_fp, len(vocab), config.student.model_dump(mode="json"), config.distill.model_dump(mode="json"),
                         [s.__dict__ for s in stages], self.student_seed)
        checkpoints = StageCheckpoints(self.folder.stage_checkpoints(name), fp)
        stale = checkpoints.discard_stale()
        if stale:
            log(f"{name}: redone ({self._why(STUDENT_KEYS)}); {stale} finished stage(s) of the earlier config discarded")
        setup = TrainSetup(config.distill, self.accelerator, self.student_seed, teacher.model.config.hidden_size, teacher.model)
        return Trained(model, run_stages(model, stages, data, setup, checkpoints))

    # ---- evaluation ----
    def evaluate(self, made: RunOutputs) -> dict:
        """metrics.json, report.md and the student's card for the finished run."""
        started, corpus, student, baseline = time.perf_counter(), made.data.corpus, made.student, made.baseline
        enter_step("evaluation")
        finished = Finished(
            config=self.config, task=self.task, corpus=corpus, teacher=made.teacher, tokenizer=made.tokenizer, vocab=made.vocab,
            student=student, baseline=baseline, teacher_test=made.annotation.caches["test"], test_cache=made.student_caches["test"],
            folder=self.folder, device=self.accelerator.device, transfer=made.transfer.sizes(),
        )
        metrics = run_metrics(finished)
        self._timed("evaluate", started)
        curves = {"teacher": made.teacher.history, "student": student.histories, "baseline": baseline.histories if baseline else []}
        written = write_results(self.folder, {**metrics, "seconds": self.timings}, curves, config_to_dict(self.config), corpus.label_names,
                                corpus.notes + made.annotation.notes)
        track_run(self.accelerator, self.folder, config_to_dict(self.config), curves, written)  # no trackers configured: nothing
        return written

    def execute(self, until: str = "evaluate") -> RunOutputs:
        """Run the steps up to and including `until`; earlier finished steps are loaded, not redone."""
        if until not in STEPS:
            raise XDistilError(f"unknown step '{until}'; expected one of {', '.join(STEPS)}")
        config = self.config
        try:
            data = self.read_data()
            distributed.on_main(lambda: record_data(self.out, data.fingerprint, data.corpus, config.data.transfer_overlap))
            tokenizer = load_tokenizer(config.teacher.model)
            made = RunOutputs(data, tokenizer, self.finetune(data, tokenizer))
            if until == "finetune":
                return made
            made.transfer = self.transfer_stream(data.corpus, tokenizer, made.teacher)
            made.annotation = self.annotate(data, made.teacher, tokenizer, made.transfer)
            student_tokenizer = load_tokenizer(family(config.student.arch).tokenizer_source(config.student, config.teacher.model))
            made.student_caches = self.student_inputs(made.annotation.caches, tokenizer, student_tokenizer, made.transfer)
            if until == "annotate":
                return made
            started, transfer = time.perf_counter(), made.student_caches["transfer"]
            made.vocab = self.student_vocab(transfer, student_tokenizer)
            train_data = self.stage_data(data.corpus, made.student_caches, made.vocab, tokenizer.pad_token_id)
            inputs = (train_data, made.vocab, made.teacher, len(data.corpus.label_names), transfer.manifest["fingerprint"], tokenizer)
            made.student = self.train("student", expand_stages(config.distill, config.student.layer_groups()), *inputs)
            distributed.on_main(lambda: save_student(self.folder.student, made.student.model, student_tokenizer, made.vocab,
                                                     data.corpus.label_names, config.teacher.max_length, self.task.name))
            self._timed("distill", started)
            if config.evaluation.baseline:  # the same student on the gold labels alone: what distillation adds is measured against it
                started = time.perf_counter()
                made.baseline = self.train("baseline", [gold_only(config.student.layer_groups(), config.evaluation.baseline_epochs,
                                                                  config.distill.lr)], *inputs)
                self._timed("baseline", started)
            if until == "evaluate":
                made.metrics = distributed.on_main(lambda: self.evaluate(made))  # the other processes' share ends with training
            return made
        finally:
            self.close()  # the run folder's lock: another process may run in it now

    def run(self, until: str = "evaluate") -> dict | None:
        """`execute`, returning the metrics when evaluation ran (None for an earlier `until`)."""
        return self.execute(until).metrics
