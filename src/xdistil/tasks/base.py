"""A task object owns everything that differs between classification and tagging, so the pipeline never branches on the task.

It reads the corpus, names the teacher's head and fine-tunes it, says how unlabeled text enters
the transfer stream and which annotator writes cache rows, and turns predictions into metrics
and the dev score.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import numpy as np
import torch
from accelerate import Accelerator

from xdistil.config import DataConfig, TeacherConfig
from xdistil.data.corpus import Corpus, Split
from xdistil.loop import StageHistory
from xdistil.tasks.description import TaskDescription
from xdistil.transfer.cache import Annotator


class Task:
    """Base class of the tasks; see `classification.py` and `tagging.py`."""

    description: ClassVar[TaskDescription]  # names, figures and output shown outside training (torch-free)
    teacher_class: ClassVar[type]  # the transformers auto class of the teacher's head
    annotator: ClassVar[Annotator]  # the teacher's outputs for a chunk of texts
    token_annotator: ClassVar[Annotator]  # a student's own token ids for a chunk (when it has another tokenizer)

    @property
    def name(self) -> str:
        return self.description.name

    @property
    def per_word(self) -> bool:
        return self.description.per_word

    @property
    def primary_metric(self) -> str:
        return self.description.primary_metric

    @property
    def score_name(self) -> str:
        return self.description.score_name

    @property
    def long_text(self) -> str:
        return self.description.long_text

    def load_corpus(self, config: DataConfig) -> Corpus:
        raise NotImplementedError

    def finetune(
        self, model: torch.nn.Module, tokenizer, corpus: Corpus, config: TeacherConfig, accelerator: Accelerator, seed: int
    ) -> list[StageHistory]:
        """Train the teacher in place: the stages it went through, in order (teacher.recipe)."""
        raise NotImplementedError

    def unlabeled(self, texts: Iterable[str], config: DataConfig) -> Iterable:
        """Unlabeled texts as the annotator reads them (as they are by default)."""
        return texts

    def unlabeled_settings(self, config: DataConfig) -> object:
        """The data settings `unlabeled` depends on (part of the transfer set's fingerprint)."""
        return None

    def metrics(self, predicted: np.ndarray, split: Split, label_names: list[str]) -> dict:
        """Test metrics of predicted label indices: one per example, or one per word in order."""
        raise NotImplementedError

    def score(self, predicted: list[np.ndarray], split: Split, label_names: list[str]) -> float:
        """The dev figure a stage monitors, from predicted label indices per example."""
        return self.metrics(np.concatenate(predicted), split, label_names)[self.primary_metric]
