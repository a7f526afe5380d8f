"""What a task is, in words and names: everything outside training that differs between tasks.

Torch-free (it reads only `xdistil.text`), so the config, the cache, the CLI, the ONNX runtime, the report and the card
read it without loading a model. A task module (`classification.py`, `tagging.py`) pairs one description
with the heavy part (reading the corpus, fine-tuning the teacher, annotating); `register_task` adds both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from xdistil.text import tokenize

# what every teacher-annotated chunk holds, and a student's own token ids when it reads another tokenizer
TEACHER_TENSORS = frozenset({"logits", "repr", "input_ids", "lengths"})
TOKEN_TENSORS = frozenset({"input_ids", "lengths"})
WORD_TENSORS = frozenset({"words", "starts"})  # per-word tasks: each row's word count and first-piece positions
TOKENS_SUFFIX = "-tokens"  # a cache of the student's own token ids is the task's name with this suffix


@dataclass(frozen=True)
class TaskDescription:
    """A task's names, the figures it reports and how its predictions are shown."""

    name: str
    per_word: bool  # one output per word (a sentence in, a tag per word out) rather than one per text
    primary_metric: str  # the key of metrics.json that retention, dev selection and the report compare
    score_name: str  # what the dev score is called in histories and logs
    long_text: str  # what happens to a text longer than the teacher's max_length
    noun: str  # what the student is, in the card: "text classifier"
    hub_tag: str  # the hub's task tag: "text-classification"
    example_unit: str  # what one test example is called in the report: "examples", "sentences"
    loyalty_unit: str  # what label loyalty counts: "texts", "words"
    usage: str  # the card's example input of predict(): '["a text to label"]'
    intended_use: str  # the card's first line on intended use
    quality_rows: tuple[tuple[str, str, str], ...]  # (label, format, metrics key) of the report's quality figures
    augmentable: bool = True  # transfer.augment (token-level edits of whole texts) applies
    pooled: bool = True  # the teacher's representation is one pooled vector per text (the 'layers' loss needs it)

    def encode(self, tokenizer, items: Sequence, max_length: int) -> tuple[list[list[int]], int]:
        """A per-text task's items -> the tokenizer's ids (cut to `max_length`) and how many were cut: the one
        conversion the teacher's fine-tuning, annotation and every predictor share. A task whose items are
        not single texts (a pair of texts) overrides it."""
        return tokenize(tokenizer, items, max_length)

    def cache_tensors(self, tokens_only: bool = False) -> frozenset[str]:
        """The tensors a chunk of this task's transfer cache holds."""
        base = TOKEN_TENSORS if tokens_only else TEACHER_TENSORS
        return base | WORD_TENSORS if self.per_word else base

    def output_lines(self, items: Sequence[str], rows: Iterator, label_names: list[str], probabilities: bool) -> Iterator[str]:
        """`xdistil predict`'s output: one line per input line (an empty input gets an empty line); `rows` holds
        the predicted probabilities of the non-empty inputs in order."""
        for text in items:
            probs = next(rows) if text else None
            if self.per_word:
                words = text.split()
                tags = [label_names[i] for i in probs.argmax(1)] if probs is not None else []
                if probabilities:
                    yield json.dumps({"tokens": words, "tags": tags, "probabilities": probs.round(4).tolist() if probs is not None else []},
                                     ensure_ascii=False)
                else:
                    yield " ".join(f"{w}/{t}" for w, t in zip(words, tags))
                continue
            label = label_names[int(probs.argmax())] if probs is not None else None
            if probabilities:
                shown = dict(zip(label_names, map(float, probs))) if probs is not None else None
                yield json.dumps({"text": text, "label": label, "probabilities": shown}, ensure_ascii=False)
            else:
                yield label or ""


CLASSIFICATION = TaskDescription(
    name="classification", per_word=False, primary_metric="accuracy", score_name="accuracy", long_text="truncated",
    noun="text classifier", hub_tag="text-classification", example_unit="examples", loyalty_unit="texts",
    usage='["a text to label"]', intended_use="Labeling texts",
    quality_rows=(("test accuracy (%)", "pct", "accuracy"), ("test macro-F1 (%)", "pct", "macro_f1"),
                  ("label loyalty to teacher (%)", "pct", "loyalty")),
)
TAGGING = TaskDescription(
    name="tagging", per_word=True, primary_metric="f1", score_name="entity F1", long_text="split into teacher windows and stitched back",
    noun="tagger", hub_tag="token-classification", example_unit="sentences", loyalty_unit="words",
    usage='[["Alice", "lives", "in", "Paris"]]', intended_use="Tagging of words (IOB2 entity tags)",
    quality_rows=(("test entity F1, micro (%)", "pct", "f1"), ("test entity precision (%)", "pct", "precision"),
                  ("test entity recall (%)", "pct", "recall"), ("test token accuracy (%)", "pct", "token_accuracy"),
                  ("mean F1 over languages (%)", "pct", "mean_language_f1"), ("word loyalty to teacher (%)", "pct", "loyalty")),
    augmentable=False, pooled=False,
)

DESCRIPTIONS: dict[str, TaskDescription] = {d.name: d for d in (CLASSIFICATION, TAGGING)}


# another installed package's tasks: `[project.entry-points."xdistil.tasks"] my-task = "my_package.tasks:MyTask"` (a Task class or instance)
ENTRY_POINTS = "xdistil.tasks"
PLUGINS: dict[str, object] = {}  # tasks loaded through an entry point, whose heavy part `tasks.get_task` registers


def describe(name: str) -> TaskDescription:
    """The description of the task called `name` (a config's `task`, a saved student's, or a cache's); a task
    of another package is loaded through its entry point the first time it is asked for."""
    if name not in DESCRIPTIONS:
        _load_entry_point(name)
    try:
        return DESCRIPTIONS[name]
    except KeyError:
        raise ValueError(f"unknown task '{name}'; expected one of {', '.join(sorted(DESCRIPTIONS))} "
                         f"(or a task a package declares under the '{ENTRY_POINTS}' entry points)") from None


def _load_entry_point(name: str) -> None:
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINTS, name=name):
        try:
            task = point.load()
        except Exception as error:  # the package's own import error, said in one line
            raise ValueError(f"task '{name}': its entry point {point.value} did not load ({type(error).__name__}: {error})") from None
        if name in DESCRIPTIONS:  # a task module may register itself when imported
            return
        task = task() if isinstance(task, type) else task
        description = getattr(task, "description", None)
        if getattr(description, "name", None) != name:
            raise ValueError(f"task '{name}': its entry point {point.value} is not a task named '{name}'")
        DESCRIPTIONS[name], PLUGINS[name] = description, task
        return


def cache_tensors(kind: str) -> frozenset[str]:
    """The tensors a cache of `kind` holds: a task's name, or that name with TOKENS_SUFFIX for a student's own tokens."""
    tokens_only = kind.endswith(TOKENS_SUFFIX)
    return describe(kind.removesuffix(TOKENS_SUFFIX) if tokens_only else kind).cache_tensors(tokens_only)


def default_task(per_word: bool) -> str:
    """The built-in task of a student whose folder or caller names none (students made before tasks were named)."""
    return TAGGING.name if per_word else CLASSIFICATION.name

