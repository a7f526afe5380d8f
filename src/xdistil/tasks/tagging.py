"""Token tagging (NER): one IOB2 tag per word, per-word teacher rows, entity F1 (seqeval)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from transformers import AutoModelForTokenClassification

from xdistil.data.corpus import Corpus, Split, load_tagged_corpus
from xdistil.data.tagging import pretokenize
from xdistil.evaluation.metrics import tagging_metrics
from xdistil.tasks.base import Task
from xdistil.tasks.description import TAGGING
from xdistil.teacher.finetune import finetune_tagger
from xdistil.transfer.annotators import tag_tokens, tag_chunk


class Tagging(Task):
    description = TAGGING
    teacher_class = AutoModelForTokenClassification
    annotator = staticmethod(tag_chunk)
    token_annotator = staticmethod(tag_tokens)

    def load_corpus(self, config) -> Corpus:
        return load_tagged_corpus(config)

    def finetune(self, model, tokenizer, corpus, config, accelerator, seed):
        def dev_f1(predicted: list[np.ndarray]) -> float:
            return self.score(predicted, corpus.dev, corpus.label_names)

        return [finetune_tagger(model, tokenizer, corpus.train, corpus.dev, dev_f1, self.score_name, config, accelerator, seed)]

    def unlabeled(self, texts: Iterable[str], config) -> Iterable[list[str]]:
        """Unlabeled lines become word lists by `data.pretokenizer`."""
        return (pretokenize(line, config.pretokenizer) for line in texts)

    def unlabeled_settings(self, config) -> object:
        return config.pretokenizer

    def metrics(self, predicted: np.ndarray, split: Split, label_names: list[str]) -> dict:
        rows = np.split(predicted, np.cumsum([len(s) for s in split.labels])[:-1])
        tags = [[label_names[i] for i in row] for row in rows]
        gold = [[label_names[i] for i in row] for row in split.labels]
        return tagging_metrics(tags, gold, split.langs)
