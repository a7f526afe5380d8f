"""Text classification: one label per text, pooled teacher representations, accuracy and macro-F1."""

from __future__ import annotations

import numpy as np
from transformers import AutoModelForSequenceClassification

from xdistil.data.corpus import Corpus, Split, load_corpus
from xdistil.evaluation.metrics import classification_metrics
from xdistil.tasks.base import Task
from xdistil.tasks.description import CLASSIFICATION
from xdistil.teacher.contrastive import contrastive_tune
from xdistil.teacher.finetune import finetune_teacher
from xdistil.transfer.annotators import classify_tokens, classify_chunk


class Classification(Task):
    description = CLASSIFICATION
    teacher_class = AutoModelForSequenceClassification
    annotator = staticmethod(classify_chunk)
    token_annotator = staticmethod(classify_tokens)

    def load_corpus(self, config) -> Corpus:
        return load_corpus(config)

    def finetune(self, model, tokenizer, corpus, config, accelerator, seed):
        encode = self.description.encode
        pairs = [contrastive_tune(model, tokenizer, corpus.train, corpus.dev, config, accelerator, seed, encode)] if config.recipe == "setfit" else []
        return [*pairs, finetune_teacher(model, tokenizer, corpus.train, corpus.dev, config, accelerator, seed, encode)]

    def metrics(self, predicted: np.ndarray, split: Split, label_names: list[str]) -> dict:
        return classification_metrics(predicted, np.asarray(split.labels))
