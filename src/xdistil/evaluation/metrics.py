"""Quality and loyalty metrics for classification."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score


def classification_metrics(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of predicted label indices against gold ones."""
    return {
        "accuracy": float((predicted == gold).mean()),
        "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0)),
    }


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def loyalty(student_logits: np.ndarray, teacher_logits: np.ndarray) -> dict[str, float]:
    """Label loyalty (share of examples where the student's label is the teacher's) and
    probability loyalty (1 - Jensen-Shannon divergence, base 2, between their distributions)."""
    p, q = _softmax(student_logits.astype(np.float64)), _softmax(teacher_logits.astype(np.float64))
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sum(np.where(a > 0, a * np.log2(np.clip(a, 1e-300, None) / np.clip(b, 1e-300, None)), 0.0), axis=-1)

    js = 0.5 * kl(p, m) + 0.5 * kl(q, m)
    return {
        "label": float((student_logits.argmax(-1) == teacher_logits.argmax(-1)).mean()),
        "probability": float(1.0 - js.mean()),
    }


def tagging_metrics(predicted: list[list[str]], gold: list[list[str]], langs: list[str | None] | None = None) -> dict:
    """Entity-level micro precision/recall/F1 (seqeval, IOB2, CoNLL rules), F1 per entity type,
    token accuracy and, when sentences carry a language, F1 per language and their unweighted mean."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    words = sum(len(g) for g in gold)
    correct = sum(p == g for ps, gs in zip(predicted, gold) for p, g in zip(ps, gs))
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    result: dict = {
        "f1": float(f1_score(gold, predicted, zero_division=0)),
        "precision": float(precision_score(gold, predicted, zero_division=0)),
        "recall": float(recall_score(gold, predicted, zero_division=0)),
        "token_accuracy": correct / max(words, 1),
        "per_type": {
            kind: {"f1": float(v["f1-score"]), "support": int(v["support"])}
            for kind, v in report.items()
            if not kind.endswith(" avg")
        },
    }
    if langs and any(lang is not None for lang in langs):
        per_language = {}
        for lang in sorted({str(lang) for lang in langs}):
            rows = [i for i, x in enumerate(langs) if str(x) == lang]
            per_language[lang] = float(f1_score([gold[i] for i in rows], [predicted[i] for i in rows], zero_division=0))
        result["per_language_f1"] = per_language
        result["mean_language_f1"] = float(np.mean(list(per_language.values())))
    return result
