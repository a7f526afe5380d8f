"""Readers for token-tagging data: CoNLL-style files and JSONL, with tag schemes normalised to IOB2.

CoNLL: one token per line, the tag in the last column, a blank line between sentences,
`-DOCSTART-` lines skipped; columns are split on any run of spaces or tabs, so stray trailing
whitespace is harmless, and a line holding only whitespace is a sentence break (counted).
JSONL: one `{"tokens": [...], "tags": [...]}` object per line, with an optional `"lang"`.
IOB1, IOB2 and BIOES (also BILOU) input all become IOB2; a tag outside the scheme is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path

from xdistil.data.readers import file_format, hub_split, iter_json_objects, iter_lines, load_hub
from xdistil.errors import XDistilError

_TAG = re.compile(r"^(O|([BIESLU])-(\S+))$")


@dataclass
class TaggedTable:
    """Sentences of tokens with IOB2 tags, optional languages, the scheme found and handling notes."""

    path: Path
    tokens: list[list[str]]
    tags: list[list[str]]
    langs: list[str | None]
    scheme: str = "IOB2"
    notes: list[str] = field(default_factory=list)
    groups: ClassVar[None] = None  # sentences are carved one by one
    unit: ClassVar[str] = "sentences"
    labels_word: ClassVar[str] = "tags"

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, indices: list[int]) -> TaggedTable:
        """The sentences at `indices`, in that order."""
        return TaggedTable(self.path, [self.tokens[i] for i in indices], [self.tags[i] for i in indices],
                           [self.langs[i] for i in indices], self.scheme)

    def as_texts(self) -> list[str]:
        """Each sentence as a line of unlabeled text (words joined by spaces)."""
        return [" ".join(words) for words in self.tokens]

    def entity_types(self) -> list[str]:
        return sorted({t[2:] for sentence in self.tags for t in sentence if t != "O"})


def detect_scheme(tags: list[list[str]]) -> str:
    """BIOES when S-/E- (or U-/L-) prefixes occur; IOB1 when an entity starts with I-; otherwise IOB2."""
    prefixes = {t[0] for sentence in tags for t in sentence if t != "O"}
    if prefixes & {"S", "E", "U", "L"}:
        return "BIOES"
    for sentence in tags:
        previous = "O"
        for tag in sentence:
            if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
                return "IOB1"
            previous = tag
    return "IOB2"


def to_iob2(tags: list[str], scheme: str) -> list[str]:
    """One sentence's tags in IOB2 (every entity starts with B-)."""
    out: list[str] = []
    previous = "O"
    for tag in tags:
        if tag == "O":
            out.append(tag)
        else:
            prefix, kind = tag[0], tag[2:]
            if scheme == "BIOES":
                prefix = {"S": "B", "U": "B", "E": "I", "L": "I"}.get(prefix, prefix)
            elif scheme == "IOB1" and prefix == "I" and (previous == "O" or previous[2:] != kind):
                prefix = "B"
            out.append(f"{prefix}-{kind}")
        previous = tag
    return out


def _check_tag(path: Path, line: int, tag: str) -> None:
    if not _TAG.match(tag):
        raise XDistilError(f"{path}: line {line}: tag '{tag}' is outside the tag scheme; expected O, or B-/I-/E-/S- followed by a type")


def _read_conll(path: Path) -> TaggedTable:
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    current: tuple[list[str], list[str]] = ([], [])
    columns: int | None = None
    whitespace_breaks = 0
    for number, line in iter_lines(path):
        if not line.strip():
            if line:
                whitespace_breaks += 1
            if current[0]:
                tokens.append(current[0])
                tags.append(current[1])
                current = ([], [])
            continue
        fields = line.split()
        if fields[0] == "-DOCSTART-":
            continue
        if len(fields) < 2:
            raise XDistilError(f"{path}: line {number}: 1 column; expected a token and its tag in the last column")
        if columns is None:
            columns = len(fields)
        elif len(fields) != columns:
            raise XDistilError(f"{path}: line {number}: {len(fields)} columns, expected {columns} as on the first token line")
        _check_tag(path, number, fields[-1])
        current[0].append(fields[0])
        current[1].append(fields[-1])
    if current[0]:
        tokens.append(current[0])
        tags.append(current[1])
    table = TaggedTable(path, tokens, tags, [None] * len(tokens))
    if whitespace_breaks:
        table.notes.append(f"{path.name}: {whitespace_breaks} lines holding only spaces or tabs were read as sentence breaks")
    return table


def _read_jsonl(path: Path) -> TaggedTable:
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    langs: list[str | None] = []
    for number, record in iter_json_objects(path):
        words, labels = record.get("tokens"), record.get("tags")
        if not isinstance(words, list) or not isinstance(labels, list) or not words:
            raise XDistilError(f"{path}: line {number}: expected an object with non-empty 'tokens' and 'tags' lists")
        if len(words) != len(labels):
            raise XDistilError(f"{path}: line {number}: {len(words)} tokens but {len(labels)} tags; expected one tag per token")
        for tag in labels:
            _check_tag(path, number, str(tag))
        tokens.append([str(w) for w in words])
        tags.append([str(t) for t in labels])
        langs.append(record.get("lang"))
    return TaggedTable(path, tokens, tags, langs)


def read_tagged(path: str | Path) -> TaggedTable:
    """Read a CoNLL-style (.conll, .txt, .bio, ...) or JSONL tagging file, tags normalised to IOB2."""
    path = Path(path)
    table = _read_jsonl(path) if file_format(path) == "jsonl" else _read_conll(path)
    if not table.tokens:
        raise XDistilError(f"{path}: no sentences; expected tokens with tags")
    table.scheme = detect_scheme(table.tags)
    if table.scheme != "IOB2":
        table.tags = [to_iob2(sentence, table.scheme) for sentence in table.tags]
        table.notes.append(f"{path.name}: tags converted from {table.scheme} to IOB2")
    return table


_PUNCTUATION_WORDS = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")


def pretokenize(text: str, kind: str = "whitespace") -> list[str]:
    """Words of an unlabeled transfer line: split on whitespace, or also split punctuation off
    words (`punctuation`, closer to CoNLL tokenisation)."""
    if kind == "punctuation":
        return _PUNCTUATION_WORDS.findall(text)
    return text.split()


def tag_names(types: list[str]) -> list[str]:
    """The IOB2 label set for entity types: O first, then B-/I- of each type in sorted order."""
    return ["O"] + [f"{prefix}-{kind}" for kind in sorted(types) for prefix in ("B", "I")]


def encode_tags(table: TaggedTable, names: list[str], role: str) -> list[list[int]]:
    """Tag indices per sentence; a type never seen in train is a one-line error naming the sentence."""
    index = {name: i for i, name in enumerate(names)}
    out = []
    for number, sentence in enumerate(table.tags, start=1):
        for tag in sentence:
            if tag not in index:
                raise XDistilError(
                    f"{table.path}: {role} sentence {number}: tag '{tag}' has an entity type never seen in train; "
                    f"expected one of {names}"
                )
        out.append([index[t] for t in sentence])
    return out


def hub_tagged(name: str, tokens_column: str, tags_column: str) -> tuple[TaggedTable, TaggedTable | None, TaggedTable | None]:
    """(train, validation, test) of a Hugging Face token-classification dataset, tags as IOB2 names."""
    loaded = load_hub(name)

    def table(split: str) -> TaggedTable | None:
        part = hub_split(loaded, name, split, (tokens_column, tags_column))
        if part is None:
            return None
        feature = getattr(part.features[tags_column], "feature", None)
        names = getattr(feature, "names", None)
        tags = [[names[t] if names else str(t) for t in row] for row in part[tags_column]]
        langs = list(part["lang"]) if "lang" in part.column_names else [None] * len(tags)
        result = TaggedTable(Path(f"{name}:{split}"), [[str(w) for w in row] for row in part[tokens_column]], tags, langs)
        for number, sentence in enumerate(result.tags, start=1):
            for tag in sentence:
                _check_tag(result.path, number, tag)
        result.scheme = detect_scheme(result.tags)
        if result.scheme != "IOB2":
            result.tags = [to_iob2(s, result.scheme) for s in result.tags]
        return result

    train = table("train")
    if train is None:
        raise XDistilError(f"dataset '{name}': no 'train' split")
    return train, table("validation") or table("dev"), table("test")
