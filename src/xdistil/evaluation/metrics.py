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
