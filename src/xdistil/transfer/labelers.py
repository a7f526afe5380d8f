"""What labels the transfer set: each labeler turns one chunk of texts into the tensors of a cache chunk
(`cache.Labeler`), so the chunked, resumable driver, `accelerate launch` sharding and the Ray engine take any of them.

- `TeacherLabeler`: the fine-tuned Hugging Face teacher through the task's annotator (logits and representations).
- `TokenLabeler`: a student's own tokenizer alone (token ids, no targets), for a student reading another tokenizer.
- `FunctionLabeler`: a user's Python function (e.g. one that asks a large language model) giving probabilities,
  logits or label names per text; each chunk is cached as it is done, so a killed or rate-limited run resumes
  without calling it again for finished chunks; a failing call is retried a bounded number of times.
- `FileLabeler`: labels someone already produced, read from a JSONL/CSV/TSV file of `text` plus `label`, `probs`
  or `logits`; a text the file lacks is an error naming it, never a silently dropped row.
- `EnsembleLabeler`: several of these as one (the weighted mean of their probabilities or logits).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from xdistil.errors import XDistilError
from xdistil.fingerprint import fingerprint as _fingerprint
from xdistil.progress import log
from xdistil.tasks.description import TOKENS_SUFFIX
from xdistil.text import Encode, tokenization_rules, tokenize
from xdistil.transfer.annotators import classify_tokens
from xdistil.transfer.cache import AnnotationSpec, Annotator, Labeler, PairedCache, TransferCache, annotate_parts

OUTPUTS = ("probs", "logits", "labels")  # what a function or file labeler gives per text
SMALLEST_PROBABILITY = 1e-6  # a probability of 0 (or a hard label's other classes) becomes this before the log


@dataclass(frozen=True)
class TeacherSource:
    """Where another process loads the fine-tuned teacher from (the run folder's `teacher/`, on storage every
    worker sees), at which precision it annotates, and on which device. A model object is not shipped: a pickled
    transformers model loses the hooks that return hidden states."""

    folder: str
    auto_class: type
    precision: str
    device: str = "cpu"

    def load(self) -> torch.nn.Module:
        from xdistil.teacher.heads import load_teacher_model
        from xdistil.teacher.precision import at_precision

        return at_precision(load_teacher_model(self.folder, self.auto_class).to(self.device).eval(), self.precision)


@dataclass
class TeacherLabeler:
    """The fine-tuned teacher: the task's annotator (pooled rows or per-word rows) over the model."""

    model: torch.nn.Module | None  # None in another process: loaded from `source` on first use
    tokenizer: Any
    annotator: Annotator
    label_order: Sequence[int] | None  # the teacher's output index of each label name
    fingerprint: str  # the teacher's
    source: TeacherSource | None = None
    own_spec: dict | None = None  # spec fields this teacher reads its own way (an ensemble member: its own layer and pooling)
    provides: ClassVar[frozenset[str]] = frozenset({"logits", "repr"})

    @classmethod
    def of(cls, teacher, tokenizer, task, label_names: Sequence[str], precision: str, folder: Path) -> TeacherLabeler:
        """The run's fine-tuned teacher (a `teacher.store.Teacher` saved in `folder`) at the annotation precision (a
        converted copy, or the teacher itself), its outputs in the order of `label_names`, by the task's annotator."""
        from xdistil.teacher.models import teacher_label_order
        from xdistil.teacher.precision import at_precision

        return cls(at_precision(teacher.model, precision), tokenizer, task.annotator, teacher_label_order(teacher.model, label_names),
                   teacher.fingerprint, TeacherSource(str(folder), task.teacher_class, precision))

    def label(self, texts: list, spec: AnnotationSpec, advance: Callable[[int], None]) -> tuple[dict[str, torch.Tensor], int]:
        if self.own_spec:
            spec = replace(spec, **self.own_spec)
        if self.model is None:
            if self.source is None:
                raise XDistilError("the teacher labeler has neither a model nor a folder to load one from")
            self.model = self.source.load()
        return self.annotator(self.model, self.tokenizer, texts, spec, self.label_order, advance)

    def for_worker(self, device: str) -> TeacherLabeler:
        if self.source is None:
            raise XDistilError("the teacher labeler cannot run in another process: it has no saved teacher folder")
        return replace(self, model=None, source=replace(self.source, device=device))


@dataclass
class TokenLabeler:
    """A student's own token ids of each text (and word starts); nothing runs but its tokenizer."""

    tokenizer: Any
    annotator: Annotator  # the task's token annotator
    fingerprint: str
    provides: ClassVar[frozenset[str]] = frozenset()

    def label(self, texts: list, spec: AnnotationSpec, advance: Callable[[int], None]) -> tuple[dict[str, torch.Tensor], int]:
        return self.annotator(None, self.tokenizer, texts, spec, None, advance)

    def for_worker(self, device: str) -> TokenLabeler:
        return self


def student_token_caches(caches: dict[str, TransferCache], tokenizer, parts, folder_for: Callable[[str], Path], spec: AnnotationSpec,
                         task) -> dict[str, PairedCache]:
    """Each teacher cache paired with the student's own token ids of the same texts (a student reading another
    tokenizer than the teacher's); one token cache per tokenizer, in `folder_for(its fingerprint)`."""
    spec = replace(spec, task=task.name + TOKENS_SUFFIX, precision="fp32")
    labeler = TokenLabeler(tokenizer, task.token_annotator, _fingerprint(tokenization_rules(tokenizer)))
    tokens = annotate_parts(labeler, parts, folder_for(labeler.fingerprint), spec, task.long_text, who="student tokens")
    return {name: PairedCache(caches[name], tokens.caches[name]) for name in caches}


# ---- labels from outside the process ----
def target_logits(rows: Sequence, outputs: str, label_names: Sequence[str], where: Callable[[int], str]) -> np.ndarray:
    """Rows of probabilities, logits or label names (`outputs`) as float32 logits over `label_names`; a row of the
    wrong width, NaN, a probability row that is negative or does not sum to 1, or an unknown label is one clear
    error naming the row (`where(i)`)."""
    width = len(label_names)
    if outputs == "labels":
        index = {name: i for i, name in enumerate(label_names)}
        out = np.full((len(rows), width), math.log(SMALLEST_PROBABILITY), dtype=np.float32)
        for i, label in enumerate(rows):
            if str(label) not in index:
                raise XDistilError(f"{where(i)}: label {label!r} is not one of the labels {', '.join(label_names)}")
            out[i, index[str(label)]] = 0.0
        return out
    for i, row in enumerate(rows):
        if not _numbers(row):
            raise XDistilError(f"{where(i)}: expected a list of {width} numbers ({outputs} over {', '.join(label_names)})")
        if len(row) != width:
            raise XDistilError(f"{where(i)}: {len(row)} {outputs}, expected {width} (one per label: {', '.join(label_names)})")
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), width)
    for i, row in enumerate(values):
        if not np.isfinite(row).all():
            raise XDistilError(f"{where(i)}: {outputs} hold NaN or infinity")
        if outputs == "probs" and (row.min() < 0 or abs(row.sum() - 1.0) > 1e-3):
            raise XDistilError(f"{where(i)}: probabilities must be non-negative and sum to 1 (they sum to {row.sum():.4g})")
    if outputs == "probs":
        values = np.log(np.maximum(values, SMALLEST_PROBABILITY))
    return values.astype(np.float32)


def _numbers(row) -> bool:
    """A flat list (or array) of real numbers."""
    if isinstance(row, np.ndarray):
        return row.ndim == 1 and np.issubdtype(row.dtype, np.number)
    return isinstance(row, (list, tuple)) and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in row)


def _token_chunk(tokenizer, encode: Encode, texts: list, spec: AnnotationSpec, logits: np.ndarray) -> tuple[dict[str, torch.Tensor], int]:
    """A chunk of outside labels: the given logits beside the token ids the student reads (the token annotator's)."""
    tensors, cut = classify_tokens(None, tokenizer, texts, spec, None, lambda n: None, encode=encode)
    return {"logits": torch.from_numpy(logits), **tensors}, cut


@dataclass
class FunctionLabeler:
    """A user's function labels each chunk: `function(texts) -> one row per text` (probabilities, logits or label
    names, by `outputs`). `name` is part of the cache's fingerprint: change it (a new model, a new prompt) to label
    afresh. The token ids the student reads come from `tokenizer` (the teacher's). Per-text tasks only."""

    function: Callable[[list], Sequence]
    name: str
    label_names: list[str]
    tokenizer: Any
    outputs: str = "probs"
    retries: int = 3  # further calls after a failed one, each after `wait` seconds, doubling
    wait: float = 1.0
    encode: Encode = tokenize
    provides: ClassVar[frozenset[str]] = frozenset({"logits"})
    calls: int = field(default=0, init=False)  # calls made by this process (the retries included)

    def __post_init__(self) -> None:
        if self.outputs not in OUTPUTS:
            raise XDistilError(f"labeler outputs '{self.outputs}': expected one of {', '.join(OUTPUTS)}")

    @property
    def fingerprint(self) -> str:
        return _fingerprint("function", self.name, self.outputs, self.label_names)

    def label(self, texts: list, spec: AnnotationSpec, advance: Callable[[int], None]) -> tuple[dict[str, torch.Tensor], int]:
        rows = self._call(texts)
        if len(rows) != len(texts):
            raise XDistilError(f"labeler '{self.name}' gave {len(rows)} rows for {len(texts)} texts")
        logits = target_logits(rows, self.outputs, self.label_names, lambda i: f"labeler '{self.name}', text {texts[i]!r}")
        advance(len(texts))
        return _token_chunk(self.tokenizer, self.encode, texts, spec, logits)

    def _call(self, texts: list) -> Sequence:
        wait = self.wait
        for attempt in range(self.retries + 1):
            self.calls += 1
            try:
                return list(self.function(list(texts)))
            except Exception as error:  # the function's own failure (a timeout, a rate limit): retried, then said in one line
                if attempt == self.retries:
                    raise XDistilError(f"labeler '{self.name}' failed {attempt + 1} times on a chunk of {len(texts)} texts "
                                       f"(first: {texts[0]!r}); last error: {type(error).__name__}: {error}") from None
                log(f"labeler '{self.name}': {type(error).__name__}: {error}; trying again in {wait:g} s")
                time.sleep(wait)
                wait *= 2
        raise AssertionError("unreachable")

    def for_worker(self, device: str) -> FunctionLabeler:
        return self


@dataclass
class FileLabeler:
    """Labels read from a file: JSONL, CSV or TSV rows of `text` plus one of `label`, `probs` or `logits` (a list over
    `label_names`; in CSV/TSV a JSON list). The file's fingerprint covers its contents. Per-text tasks only."""

    path: Path
    label_names: list[str]
    tokenizer: Any
    encode: Encode = tokenize
    provides: ClassVar[frozenset[str]] = frozenset({"logits"})

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.rows, self.outputs = _read_label_file(self.path)
        texts = list(self.rows)
        logits = target_logits([self.rows[t][1] for t in texts], self.outputs, self.label_names,
                               lambda i: f"{self.path}: line {self.rows[texts[i]][0]}")
        self.logits = dict(zip(texts, logits))
        self.fingerprint = _fingerprint("file", self.label_names, sorted((t, v.tolist()) for t, v in self.logits.items()))

    def label(self, texts: list, spec: AnnotationSpec, advance: Callable[[int], None]) -> tuple[dict[str, torch.Tensor], int]:
        self._refuse_missing(texts)
        advance(len(texts))
        return _token_chunk(self.tokenizer, self.encode, texts, spec, np.stack([self.logits[t] for t in texts]))

    def check_covers(self, texts: Iterable[str], known: Iterable[str] | None = None) -> None:
        """Every text to label is in the file, and every row of the file is one of the run's texts (`known`; default
        `texts`): one clear error otherwise (before anything is labeled, so a resumed run is checked too)."""
        wanted = set(texts)
        self._refuse_missing(wanted)
        known_texts = wanted if known is None else wanted | set(known)
        extra = [t for t in self.logits if t not in known_texts]
        if extra:
            raise XDistilError(f"{self.path}: {len(extra)} row(s) label texts that are not in the run's data "
                               f"(first: line {self.rows[extra[0]][0]}, {extra[0]!r})")

    def _refuse_missing(self, texts: Iterable[str]) -> None:
        missing = sorted({t for t in texts if t not in self.logits})
        if missing:
            raise XDistilError(f"{self.path}: {len(missing)} of the texts to label are not in the file (first: {missing[0]!r}); "
                               "it must hold every text the run labels: train, transfer, dev and test")

    def for_worker(self, device: str) -> FileLabeler:
        return self


@dataclass
class EnsembleLabeler:
    """Several labelers as one: the weighted mean of their probabilities (`combine: probs`, stored as its log) or of
    their logits. The token ids (and word starts) are the first member's, the tokenizer the student reads; the
    members' representations (different widths, different spaces) are not combined."""

    members: list[Any]  # Labelers over the same label names, in the same order
    combine: str = "probs"
    weights: list[float] | None = None  # default: equal
    representation_from_first: bool = False  # keep the first member's representations (teacher.ensemble: teacher.model's)

    @property
    def provides(self) -> frozenset[str]:
        keeps = self.representation_from_first and "repr" in self.members[0].provides
        return frozenset({"logits", "repr"} if keeps else {"logits"})

    def __post_init__(self) -> None:
        if self.combine not in ("probs", "logits"):
            raise XDistilError(f"ensemble combine '{self.combine}': expected probs or logits")
        if len(self.members) < 2:
            raise XDistilError("an ensemble needs at least two members")
        weights = self.weights or [1.0] * len(self.members)
        if len(weights) != len(self.members) or min(weights) < 0 or sum(weights) <= 0:
            raise XDistilError(f"ensemble weights {weights}: one non-negative weight per member ({len(self.members)}), not all 0")
        self.shares = np.asarray(weights, dtype=np.float64) / sum(weights)

    @property
    def fingerprint(self) -> str:
        first = ("representation of the first",) if self.representation_from_first else ()
        return _fingerprint("ensemble", self.combine, self.shares.tolist(), [m.fingerprint for m in self.members], *first)

    def label(self, texts: list, spec: AnnotationSpec, advance: Callable[[int], None]) -> tuple[dict[str, torch.Tensor], int]:
        outputs = [member.label(texts, spec, lambda n: None) for member in self.members]
        logits = [tensors["logits"].double() for tensors, _ in outputs]
        if len({tuple(x.shape) for x in logits}) != 1:
            raise XDistilError(f"ensemble members gave logits of shapes {[tuple(x.shape) for x in logits]}; they must label the same rows")
        if self.combine == "probs":
            mean = sum(share * torch.softmax(x, dim=-1) for share, x in zip(self.shares, logits))
            combined = torch.log(mean.clamp_min(SMALLEST_PROBABILITY))
        else:
            combined = sum(share * x for share, x in zip(self.shares, logits))
        first, cut = outputs[0]
        advance(len(texts))
        kept = {k: v for k, v in first.items() if k not in TARGETS or (k == "repr" and "repr" in self.provides)}
        return {**kept, "logits": combined.float()}, cut

    def for_worker(self, device: str) -> EnsembleLabeler:
        return replace(self, members=[m.for_worker(device) for m in self.members])


def _read_label_file(path: Path) -> tuple[dict[str, tuple[int, Any]], str]:
    """{text: (line, value)} and which column the values came from (read by the data readers' own row readers); one
    clear error for a malformed row or a text twice."""
    from xdistil.data.readers import delimited_records, file_format, iter_json_objects

    if not path.is_file():
        raise XDistilError(f"{path}: label file not found")
    kind = file_format(path)
    if kind == "jsonl":
        records = list(iter_json_objects(path))
    elif kind in ("csv", "tsv"):
        records = delimited_records(path, "\t" if kind == "tsv" else ",", ["text"])
    else:
        raise XDistilError(f"{path}: a label file is JSONL, CSV or TSV (got {kind})")
    rows: dict[str, tuple[int, Any]] = {}
    found: str | None = None
    for line, record in records:
        where = f"{path}: line {line}"
        if not isinstance(record.get("text"), str):
            raise XDistilError(f"{where}: expected a row with a 'text' field")
        given = [k for k in OUTPUT_COLUMNS if record.get(k) not in (None, "")]
        if len(given) != 1:
            raise XDistilError(f"{where}: expected exactly one of {', '.join(OUTPUT_COLUMNS)} beside 'text'")
        column = given[0]
        if found is None:
            found = column
        elif column != found:
            raise XDistilError(f"{where}: '{column}' where earlier rows give '{found}'; one kind of label per file")
        value = record[column]
        if kind != "jsonl" and column != "label":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise XDistilError(f"{where}: '{column}' must be a JSON list of numbers") from None
        if record["text"] in rows:
            raise XDistilError(f"{where}: the text of line {rows[record['text']][0]} again; one row per text")
        rows[record["text"]] = (line, value)
    if not rows:
        raise XDistilError(f"{path}: no labeled rows")
    return rows, OUTPUT_COLUMNS[found]  # type: ignore[index]


OUTPUT_COLUMNS = {"label": "labels", "probs": "probs", "logits": "logits"}
TARGETS = frozenset({"logits", "repr"})  # what a teacher-kind cache can hold beside the token ids


def import_function(path: str) -> Callable:
    """The function named 'module:attribute' (teacher.function); one clear line when it cannot be had."""
    from importlib import import_module

    module, _, attribute = path.partition(":")
    try:
        found = getattr(import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        raise XDistilError(f"teacher.function '{path}': {type(error).__name__}: {error}") from None
    if not callable(found):
        raise XDistilError(f"teacher.function '{path}' is not a function")
    return found


def run_labeler(config, teacher, tokenizer, task, label_names: Sequence[str], folder: Path, stream) -> tuple[Labeler, AnnotationSpec]:
    """The labeler a run config names (`teacher.source`) and the spec of the caches it fills. A file labeler is
    checked against the run's texts first (`stream`, a TransferStream): it must hold every text surely labeled, and
    no text outside the run (a labeling budget's choice is checked as it is labeled)."""
    from xdistil.teacher.inference import resolve_layer
    from xdistil.teacher.models import resolve_pooling

    settings = config.teacher
    labeler: Labeler
    if settings.source == "model":
        precision = AnnotationSpec.from_config(config, None, None).precision
        labeler = TeacherLabeler.of(teacher, tokenizer, task, label_names, precision, folder)
        layer, pooling = resolve_layer(teacher.model, settings.layer), resolve_pooling(settings.model, settings.pooling)
        if teacher.members:
            labeler = ensemble_labeler(labeler, teacher, task, label_names, precision, settings.pooling, settings.combine)
            log(f"teachers: an ensemble of {len(teacher.members) + 1}, combined by the mean of their {settings.combine}")
    elif settings.source == "file":
        labeler = FileLabeler(settings.labels, list(label_names), tokenizer, task.description.encode)
        labeler.check_covers(stream.needed_texts(), stream.known_texts())
        layer = pooling = None
    else:
        labeler = FunctionLabeler(import_function(settings.function), f"{settings.function} v{settings.version}", list(label_names),
                                  tokenizer, settings.outputs, settings.retries, encode=task.description.encode)
        layer = pooling = None
    if settings.external:
        log(f"labels: from {settings.source} {settings.labels or settings.function}; {settings.model} is only the reference encoder")
    spec = replace(AnnotationSpec.from_config(config, layer, pooling), without=tuple(sorted(TARGETS - labeler.provides)))
    return labeler, spec


def ensemble_labeler(first: TeacherLabeler, teacher, task, label_names: Sequence[str], precision: str, pooling: str, combine: str):
    """The ensemble's labeler: `first` (teacher.model's labeler, whose token ids and representations the cache keeps) and a
    labeler per member, each reading the texts with its own tokenizer, at its own middle layer."""
    from xdistil.teacher.inference import resolve_layer
    from xdistil.teacher.models import resolve_pooling

    members = [first]
    for member in teacher.members:
        labeler = TeacherLabeler.of(member.teacher, member.tokenizer, task, label_names, precision, member.folder)
        own = {"layer": resolve_layer(member.teacher.model, None), "pooling": resolve_pooling(member.model, pooling)}
        members.append(replace(labeler, own_spec=own))
    return EnsembleLabeler(members, combine, [1.0] + [m.weight for m in teacher.members], representation_from_first=True)


def member_figures(config, teacher, tokenizer, task, label_names: list[str], split, spec) -> list[tuple[dict, np.ndarray]]:
    """(who, test logits) of every teacher of an ensemble, teacher.model first: each labels the test split alone."""
    from xdistil.teacher.inference import resolve_layer
    from xdistil.teacher.models import resolve_pooling

    who = [(teacher, tokenizer, config.teacher.model, config.seed, 1.0, None)]
    who += [(m.teacher, m.tokenizer, m.model, m.seed, m.weight, m.folder) for m in teacher.members]
    out = []
    for model, reads, name, seed, weight, folder in who:
        labeler = TeacherLabeler.of(model, reads, task, label_names, spec.precision, folder or Path())
        own = replace(spec, layer=resolve_layer(model.model, None), pooling=resolve_pooling(name, config.teacher.pooling))
        tensors, _ = labeler.label(list(split.texts), own, lambda n: None)
        out.append(({"model": name, "seed": seed, "weight": weight}, tensors["logits"].numpy()))
    return out
