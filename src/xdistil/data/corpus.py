"""Assemble train/dev/test/transfer from the data config: files, a built-in dataset or a hub dataset."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from xdistil.config import DataConfig
from xdistil.data.builtin import BUILTIN_DATASETS, rotten_tomatoes_files
from xdistil.data.readers import MAX_CHARS, Table, hub_split, iter_unlabeled, load_hub, read_labeled, text_key, unify_labels
from xdistil.data.splits import carve, resolve_size
from xdistil.data.tagging import TaggedTable, encode_tags, hub_tagged, read_tagged, tag_names
from xdistil.errors import XDistilError
from xdistil.fingerprint import fingerprint, texts_fingerprint

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


@dataclass
class Split:
    """Labeled examples with label indices into the corpus' label names.

    Classification: a text and a label index per example. Tagging: a word list and one tag index
    per word, and optionally a language per sentence.
    """

    texts: list
    labels: list
    langs: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TextStream:
    """Unlabeled texts in a fixed order, read lazily from in-memory lists and files: any size fits in memory.

    `scan()` makes one pass to count, fingerprint and check every text; iterating reads the files again.
    """

    parts: list[list[str] | Path]
    text_column: str = "text"
    split_sentences: bool = False
    max_chars: int = MAX_CHARS
    exclude: frozenset[str] = frozenset()  # text_key()s of dev/test texts: the transfer set must not hold them
    overlap: str = "drop"  # what to do with a transfer text in `exclude`: drop, keep or error
    overlap_count: int = 0  # transfer texts found in `exclude` (known after scan())
    labeled: Sequence[str] = ()  # the train texts: with repeats "drop", a transfer text that repeats one is dropped
    repeats: str = "keep"  # what to do with a text seen before (a train text, an earlier transfer text): keep or drop
    repeat_count: int = 0  # transfer texts dropped as repeats (known after scan())
    _scan: tuple[int, str, list[str]] | None = field(default=None, repr=False)

    def _part(self, part: list[str] | Path, notes: list[str] | None) -> Iterator[str]:
        source = part if isinstance(part, list) else iter_unlabeled(part, self.text_column, notes, self.max_chars)
        if not self.split_sentences or isinstance(part, list):
            yield from source
            return
        texts = sentences = 0
        for text in source:
            texts += 1
            for sentence in split_sentences(text):
                sentences += 1
                yield sentence
        if notes is not None:
            notes.append(f"{Path(part).name}: {texts} texts split into {sentences} sentences")

    def _texts(self, notes: list[str] | None) -> Iterator[str]:
        overlap = repeats = 0
        seen = {_key_digest(t) for t in self.labeled} if self.repeats == "drop" else None  # 16 bytes a text, not the text
        for part in self.parts:
            for text in self._part(part, notes):
                if self.exclude and text_key(text) in self.exclude:
                    if self.overlap == "error":
                        raise XDistilError(
                            f"{part if isinstance(part, Path) else 'transfer'}: the transfer text {text[:60]!r} is also a dev/test "
                            "text (leakage); remove it, or set data.transfer_overlap to drop or keep"
                        )
                    overlap += 1
                    if self.overlap == "drop":
                        continue
                if seen is not None:
                    key = _key_digest(text)
                    if key in seen:
                        repeats += 1
                        continue
                    seen.add(key)
                yield text
        if notes is not None:
            self.overlap_count, self.repeat_count = overlap, repeats
            if overlap:
                done = "dropped (data.transfer_overlap: drop)" if self.overlap == "drop" else "kept (data.transfer_overlap: keep)"
                notes.append(f"{overlap} transfer texts are also dev/test texts; {done}")
            if repeats:
                notes.append(f"{repeats} transfer texts repeat a train text or an earlier transfer text; dropped "
                             "(data.transfer_duplicates: drop), so each text is labeled once")

    def __iter__(self) -> Iterator[str]:
        return self._texts(None)

    def scan(self) -> tuple[int, str, list[str]]:
        """(number of texts, fingerprint of the texts, notes on skipped lines and sentence splitting); cached."""
        if self._scan is None:
            notes: list[str] = []
            count = 0

            def counted() -> Iterator[str]:
                nonlocal count
                for text in self._texts(notes):
                    count += 1
                    yield text

            digest = texts_fingerprint(counted())
            self._scan = (count, digest, notes)
        return self._scan

    def __len__(self) -> int:
        return self.scan()[0]


@dataclass
class Corpus:
    """Everything a run learns and is judged on."""

    label_names: list[str]
    train: Split
    dev: Split
    test: Split
    transfer: TextStream
    notes: list[str] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test), "transfer": len(self.transfer)}

    def fingerprint(self, task: str) -> str:
        """A fingerprint of every text, label and language of every split, for `task`."""
        return fingerprint(
            task,
            self.label_names,
            [texts_fingerprint(t) for t in (self.train.texts, self.dev.texts, self.test.texts)] + [self.transfer.scan()[1]],
            self.train.labels, self.dev.labels, self.test.labels,
            [self.train.langs, self.dev.langs, self.test.langs],
        )


def split_sentences(text: str, min_words: int = 3) -> list[str]:
    """Split a paragraph into sentences; fragments under min_words stay attached to their neighbour."""
    pieces: list[str] = []
    for piece in _SENTENCE_END.split(text):
        if pieces and len(piece.split()) < min_words:
            pieces[-1] = f"{pieces[-1]} {piece}"
        else:
            pieces.append(piece)
    return pieces


def _encode(table: Table, names: list[str], role: str) -> Split:
    index = {name: i for i, name in enumerate(names)}
    assert table.labels is not None
    for position, label in enumerate(table.labels):
        if label not in index:
            raise XDistilError(
                f"{table.path}: {role} label '{label}' (example {position + 1}) never occurs in train; "
                f"expected one of {names}"
            )
    return Split(list(table.texts), [index[label] for label in table.labels])


def _carve_size(path: Path, n: int, size: float, role: str) -> int:
    """How many examples to carve for dev or test; refusing a split that would be empty or leave no train."""
    count = resolve_size(size, n)
    if count < 1 or count >= n:
        raise XDistilError(
            f"{path}: too few examples ({n}) to carve a {role} split with {role}_size {size}; "
            f"give data.{role} as a file or use more labeled data"
        )
    return count


def _hub_tables(config: DataConfig) -> tuple[Table, Table | None, Table | None]:
    loaded = load_hub(config.dataset)

    def table(split: str) -> Table | None:
        part = hub_split(loaded, config.dataset, split, (config.text_column, config.label_column))
        if part is None:
            return None
        feature = part.features[config.label_column]
        names = getattr(feature, "names", None)
        labels = [names[v] if names else str(v) for v in part[config.label_column]]
        return Table(Path(f"{config.dataset}:{split}"), [str(t) for t in part[config.text_column]], labels)

    train = table("train")
    if train is None:
        raise XDistilError(f"dataset '{config.dataset}': no 'train' split")
    return train, table("validation") or table("dev"), table("test")


class LabeledTable(Protocol):
    """What the assembler needs of a task's labeled rows (a `readers.Table`, a `tagging.TaggedTable`, the next task's)."""

    path: Path
    groups: list[str] | None  # rows of one group never straddle two splits (None: carved row by row)
    unit: str  # what a row is called in the notes: "examples", "sentences"
    labels_word: str  # what its labels are called: "labels", "tags"

    def __len__(self) -> int: ...

    def subset(self, indices: list[int]) -> LabeledTable: ...

    def as_texts(self) -> list[str]: ...


T = TypeVar("T", bound=LabeledTable)


@dataclass
class Assembled(Generic[T]):
    """Labeled splits carved as the config says, and the transfer stream (checked, scanned once)."""

    train: T
    dev: T
    test: T
    transfer: TextStream
    notes: list[str]


def assemble(train: T, dev: T | None, test: T | None, config: DataConfig, notes: list[str], extra_transfer: Sequence[Path] = (),
             group_column: str | None = None) -> Assembled[T]:
    """The one sequence every task runs: carve test, then dev, from train when missing; move train beyond
    `train_size` to the transfer set (or leave it out); build the transfer stream without dev/test texts.
    Every count-changing step is noted."""
    seed = config.split_seed
    if test is None:
        size = _carve_size(train.path, len(train), config.test_size, "test")
        test_idx, rest_idx = carve(len(train), size, seed, train.groups)
        test, train = train.subset(test_idx), train.subset(rest_idx)
        notes.append(f"test carved from train: {len(test_idx)} {train.unit} (seed {seed}{', by ' + group_column if group_column else ''})")
    if dev is None:
        size = _carve_size(train.path, len(train), config.dev_size, "dev")
        dev_idx, rest_idx = carve(len(train), size, seed + 1, train.groups)
        dev, train = train.subset(dev_idx), train.subset(rest_idx)
        notes.append(f"dev carved from train: {len(dev_idx)} {train.unit}")
    transfer_parts: list[list[str] | Path] = []
    if config.train_size is not None and config.train_size < len(train):
        # exact: a group shared by train and the unlabeled transfer set leaks no label
        keep_idx, surplus_idx = carve(len(train), config.train_size, seed + 2, train.groups, exact=True)
        surplus, train = train.subset(surplus_idx), train.subset(keep_idx)
        what = f"{len(surplus_idx)} labeled {train.unit} beyond train_size"
        if config.surplus_to_transfer:
            transfer_parts.append(surplus.as_texts())
            notes.append(f"{what} joined the transfer set without {train.labels_word}")
        else:
            notes.append(f"{what} were left out (surplus_to_transfer: false)")
    return Assembled(train, dev, test, _transfer_stream(transfer_parts, train, dev, test, config, extra_transfer), notes)


def _transfer_stream(
    parts: list, train: LabeledTable, dev: LabeledTable, test: LabeledTable, config: DataConfig, extra: Sequence[Path]
) -> TextStream:
    """The unlabeled texts, never a dev/test text (by data.transfer_overlap), each once if data.transfer_duplicates
    is drop; made lazily, scanned by the caller."""
    held_out = frozenset(text_key(t) for t in dev.as_texts() + test.as_texts())
    return TextStream(parts + [Path(p) for p in (*config.transfer, *extra)], config.text_column, config.split_transfer_sentences,
                      config.max_chars, held_out, config.transfer_overlap, labeled=train.as_texts(), repeats=config.transfer_duplicates)


def _key_digest(text: str) -> bytes:
    """A text's duplicate key (`text_key`), hashed: a set of these holds millions of texts in little memory."""
    return hashlib.blake2b(text_key(text).encode("utf-8"), digest_size=16).digest()


def _check_transfer(assembled: Assembled) -> None:
    """Read every transfer file once: bad lines fail now, not mid-run."""
    assembled.notes.extend(assembled.transfer.scan()[2])


def load_tagged_corpus(config: DataConfig) -> Corpus:
    """Tagging data: CoNLL/JSONL files or a hub dataset, tags in IOB2, dev/test carved when missing,
    unlabeled transfer text one sentence per line (pre-tokenised when streamed)."""
    notes: list[str] = []
    if config.dataset:
        train, dev, test = hub_tagged(config.dataset, config.tokens_column, config.tags_column)
    else:
        if config.train is None:
            raise XDistilError("data.train: no labeled train file given (set data.train or data.dataset)")
        train = read_tagged(config.train)
        dev = read_tagged(config.dev) if config.dev else None
        test = read_tagged(config.test) if config.test else None
    for table in (train, dev, test):
        if table is not None:
            notes.extend(table.notes)
    parts = assemble(train, dev, test, config, notes)
    names = tag_names(parts.train.entity_types())
    if len(names) < 2:
        raise XDistilError(f"{parts.train.path}: train has no entities (every tag is O); tagging needs at least one entity type")
    _check_transfer(parts)

    def split(table: TaggedTable, role: str) -> Split:
        return Split(table.tokens, encode_tags(table, names, role), table.langs)

    return Corpus(names, split(parts.train, "train"), split(parts.dev, "dev"), split(parts.test, "test"), parts.transfer, notes)


def load_corpus(config: DataConfig) -> Corpus:
    """Read and split the data as the config says; every count-changing step is noted."""
    notes: list[str] = []
    extra: list[Path] = []
    if config.dataset in BUILTIN_DATASETS:
        reviews, plots = rotten_tomatoes_files()
        train_table = read_labeled(reviews, "text", "label", config.group_column)
        dev_table = test_table = None
        extra.append(plots)
    elif config.dataset:
        train_table, dev_table, test_table = _hub_tables(config)
    else:
        if config.train is None:
            raise XDistilError("data.train: no labeled train file given (set data.train or data.dataset)")
        columns = (config.text_column, config.label_column)
        train_table = read_labeled(config.train, *columns, config.group_column, max_chars=config.max_chars)
        dev_table = read_labeled(config.dev, *columns, max_chars=config.max_chars) if config.dev else None
        test_table = read_labeled(config.test, *columns, max_chars=config.max_chars) if config.test else None
    return labeled_corpus(train_table, dev_table, test_table, config, notes, extra)


def labeled_corpus(train_table: Table, dev_table: Table | None, test_table: Table | None, config: DataConfig, notes: list[str],
                   extra_transfer: Sequence[Path] = ()) -> Corpus:
    """A corpus of one label per row from tables already read (a task with its own reader, such as pairs of
    texts, hands its tables here): labels unified and checked, splits carved, the transfer set streamed."""
    for table in (train_table, dev_table, test_table):
        notes.extend(table.notes if table is not None else [])
    notes.extend(unify_labels([train_table, dev_table, test_table]))
    parts = assemble(train_table, dev_table, test_table, config, notes, extra_transfer, config.group_column)
    assert parts.train.labels is not None
    names = sorted(set(parts.train.labels))
    if len(names) < 2:
        raise XDistilError(f"{parts.train.path}: train has a single class '{names[0]}'; classification needs at least two")
    _check_transfer(parts)
    return Corpus(
        label_names=names,
        train=_encode(parts.train, names, "train"),
        dev=_encode(parts.dev, names, "dev"),
        test=_encode(parts.test, names, "test"),
        transfer=parts.transfer,
        notes=notes,
    )
