"""Readers for labeled tables (CSV, TSV, JSONL) and unlabeled text, with one-line errors.

Every reader names the file and line of a problem. Compressed files (.gz, .bz2) are read
transparently; a UTF-8 byte-order mark and CRLF line ends are accepted.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import math
import unicodedata
from collections.abc import Iterator, Sequence
from typing import ClassVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from xdistil.errors import XDistilError

TABLE_FORMATS = {".csv": ",", ".tsv": "\t"}
# texts longer than this are cut before any tokenizer sees them: memory stays bounded per text
MAX_CHARS = 100_000


def clip(text: str, max_chars: int) -> tuple[str, bool]:
    """The text cut to `max_chars` characters, and whether it was cut."""
    return (text, False) if len(text) <= max_chars else (text[:max_chars], True)


def clipped_note(name: str, count: int, max_chars: int) -> str:
    return f"{name}: {count} texts longer than {max_chars:,} characters were cut to that length (data.max_chars)"


def text_key(text: str) -> str:
    """A text as compared for duplicates: Unicode NFKC, with no whitespace at all."""
    return "".join(unicodedata.normalize("NFKC", text).split())


@dataclass
class Table:
    """Rows read from one file: texts, optional string labels, optional group keys."""

    path: Path
    texts: list[str]
    labels: list[str] | None = None
    groups: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    unit: ClassVar[str] = "examples"  # what a row is called in the corpus' notes
    labels_word: ClassVar[str] = "labels"

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: list[int]) -> Table:
        """The rows at `indices`, in that order."""
        labels = [self.labels[i] for i in indices] if self.labels is not None else None
        groups = [self.groups[i] for i in indices] if self.groups is not None else None
        return Table(self.path, [self.texts[i] for i in indices], labels, groups)

    def as_texts(self) -> list[str]:
        """Each row as the unlabeled text the transfer set holds (and held-out texts are compared by)."""
        return list(self.texts)


def _strip_compression(path: Path) -> tuple[str, str]:
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes[-1] if suffixes and suffixes[-1] in (".gz", ".bz2") else ""
    rest = suffixes[:-1] if compression else suffixes
    return (rest[-1] if rest else ""), compression


def file_format(path: Path) -> str:
    """The format of a file from its extension: csv, tsv, jsonl or txt."""
    ext, _ = _strip_compression(path)
    return {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}.get(ext, "txt")


def open_binary(path: Path) -> BinaryIO:
    """The file opened for reading bytes, decompressing .gz and .bz2; a missing file is a one-line error."""
    if not path.exists():
        raise XDistilError(f"{path}: file not found")
    if not path.is_file():
        raise XDistilError(f"{path}: not a file")
    _, compression = _strip_compression(path)
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(compression, open)
    return opener(path, "rb")


def read_text_file(path: Path) -> str:
    """Whole file as text (decompressing if needed); non-UTF-8 bytes are a one-line error."""
    with open_binary(path) as handle:
        raw = handle.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise XDistilError(f"{path}: line {line}: bytes that are not UTF-8 (at byte {err.start}); save the file as UTF-8") from None


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() in ("", "nan", "NaN", "None", "null")


def _label_text(value: object) -> str:
    """Every reader's label rule: a string, Unicode NFC, surrounding whitespace stripped (numbers that
    mean the same class are unified later, by `unify_labels`)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return unicodedata.normalize("NFC", str(value)).strip()


def _number(label: str) -> float | None:
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _looks_alike(label: str) -> str:
    """A label with case, inner whitespace and invisible characters removed: near-duplicates share it."""
    visible = "".join(c for c in label if unicodedata.category(c) not in ("Cf", "Cc"))
    return "".join(visible.casefold().split())


def unify_labels(tables: Sequence[Table | None]) -> list[str]:
    """Make labels that are the same number one class, spelled as first seen (train is read first):
    `1`, `1.0` and `01` in any file are one label. Returns warnings for labels that still differ only in
    case, inner whitespace or invisible characters (they stay separate classes: the user decides)."""
    spelling: dict[float, str] = {}
    for table in tables:
        if table is None or table.labels is None:
            continue
        for i, label in enumerate(table.labels):
            value = _number(label)
            if value is not None:
                table.labels[i] = spelling.setdefault(value, label)
    groups: dict[str, set[str]] = {}
    for table in tables:
        for label in (table.labels or []) if table is not None else []:
            groups.setdefault(_looks_alike(label), set()).add(label)
    return [f"labels {', '.join(sorted(map(repr, names)))} differ only in case, spacing or invisible characters; they are kept as "
            "separate classes - fix the data if they are one" for names in groups.values() if len(names) > 1]


def _collect(
    path: Path, records: list[tuple[int, dict]], text_column: str, label_column: str | None, group_column: str | None,
    max_chars: int = MAX_CHARS,
) -> Table:
    """Turn (line, record) pairs into a Table, refusing missing fields with the line number."""
    texts: list[str] = []
    labels: list[str] | None = [] if label_column else None
    groups: list[str] | None = [] if group_column else None
    cut = 0
    for line, record in records:
        text = record.get(text_column)
        if text is None:
            raise XDistilError(f"{path}: line {line}: no '{text_column}' field (set the text column name)")
        if not isinstance(text, str) or not text.strip():
            raise XDistilError(f"{path}: line {line}: empty text in '{text_column}'; expected non-empty text")
        text, was_cut = clip(text.strip(), max_chars)
        cut += was_cut
        texts.append(text)
        if labels is not None:
            label = record.get(label_column)
            if _is_missing(label):
                raise XDistilError(f"{path}: line {line}: missing label in '{label_column}'; every labeled row needs one")
            if isinstance(label, (list, dict)):
                raise XDistilError(f"{path}: line {line}: label in '{label_column}' is a JSON {type(label).__name__}; "
                                   "expected one string or number")
            labels.append(_label_text(label))
        if groups is not None:
            groups.append(str(record.get(group_column, "")))
    if not texts:
        raise XDistilError(f"{path}: no rows; expected at least one example")
    return Table(path, texts, labels, groups, notes=[clipped_note(path.name, cut, max_chars)] if cut else [])


def _read_delimited(
    path: Path, delimiter: str, text_column: str, label_column: str | None, group_column: str | None, max_chars: int = MAX_CHARS
) -> Table:
    records = delimited_records(path, delimiter, (text_column, label_column, group_column))
    return _collect(path, records, text_column, label_column, group_column, max_chars)


def delimited_records(path: Path, delimiter: str, columns: Sequence[str | None]) -> list[tuple[int, dict]]:
    """(line number, {column: cell}) of each non-blank row of a CSV/TSV file whose header names every one of `columns`
    (None entries skipped); a missing or repeated column, a ragged row or unparsable text is a one-line error."""
    columns = [c for c in columns if c]
    content = read_text_file(path)
    if not content.strip():
        raise XDistilError(f"{path}: empty file; expected a header row and examples")
    # the csv module refuses cells over 128 KiB; the limit here is the whole file, and `_collect` cuts texts to max_chars
    csv.field_size_limit(max(csv.field_size_limit(), len(content) + 1))
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as err:
        raise XDistilError(f"{path}: line 1: cannot parse the header ({err})") from None
    kind = "TSV" if delimiter == "\t" else "CSV"
    repeated = sorted({name for name in header if header.count(name) > 1 and name in columns})
    if repeated:  # a dict of the row would keep the last one silently
        positions = ", ".join(str(i) for i, name in enumerate(header, start=1) if name == repeated[0])
        raise XDistilError(f"{path}: line 1: column '{repeated[0]}' appears more than once in the header (columns {positions}); "
                           "expected each column name once - rename or remove the extra one")
    for needed in columns:
        if needed not in header:
            hint = ""
            if len(header) == 1 and (("\t" in header[0]) or ("," in header[0]) or (";" in header[0])):
                hint = f"; the header looks like another delimiter was used (a {kind} file is expected)"
            raise XDistilError(f"{path}: line 1: no column '{needed}' in header {header}{hint}")
    records: list[tuple[int, dict]] = []
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise XDistilError(f"{path}: line {line}: {len(row)} fields, expected {len(header)} as in the header")
            records.append((line, dict(zip(header, row))))
    except csv.Error as err:
        raise XDistilError(f"{path}: line {reader.line_num}: cannot parse {kind} ({err})") from None
    if not records:
        raise XDistilError(f"{path}: only a header, no rows; expected at least one example")
    return records


class _RepeatedKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise _RepeatedKey(key)
    return dict(pairs)


def iter_json_objects(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line of a JSONL file, read lazily; a bad line is a one-line error."""
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            raise XDistilError(f"{path}: line {number}: not valid JSON ({err.msg}); expected one object per line") from None
        except _RepeatedKey as err:  # json.loads would keep the last value silently
            raise XDistilError(f"{path}: line {number}: key '{err.key}' appears more than once in the object; expected each key once") from None
        if not isinstance(record, dict):
            raise XDistilError(f"{path}: line {number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def _read_jsonl(path: Path, text_column: str, label_column: str | None, group_column: str | None, max_chars: int = MAX_CHARS) -> Table:
    records = list(iter_json_objects(path))
    if not records:
        raise XDistilError(f"{path}: empty file; expected one JSON object per line")
    return _collect(path, records, text_column, label_column, group_column, max_chars)


def read_labeled(
    path: str | Path, text_column: str = "text", label_column: str = "label", group_column: str | None = None,
    max_chars: int = MAX_CHARS,
) -> Table:
    """Read a labeled CSV, TSV or JSONL file; texts longer than `max_chars` are cut and counted in its notes."""
    path = Path(path)
    fmt = file_format(path)
    if fmt in ("csv", "tsv"):
        return _read_delimited(path, TABLE_FORMATS["." + fmt], text_column, label_column, group_column, max_chars)
    if fmt == "jsonl":
        return _read_jsonl(path, text_column, label_column, group_column, max_chars)
    raise XDistilError(f"{path}: unsupported labeled format; expected .csv, .tsv or .jsonl (optionally .gz/.bz2)")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a file read lazily, split on \\n only, each line decoded as strict UTF-8."""
    with open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise XDistilError(f"{path}: line {number}: bytes that are not UTF-8 (at byte {err.start} of the line); save the file as UTF-8") from None
            yield number, line.rstrip("\n").rstrip("\r")


def iter_unlabeled(
    path: str | Path, text_column: str = "text", notes: list[str] | None = None, max_chars: int = MAX_CHARS
) -> Iterator[str]:
    """Unlabeled transfer texts one at a time: plain text (one example per line) and JSONL stream from disk,
    so a transfer set of any size costs no memory; CSV/TSV are read whole. Skipped blank lines are
    counted into `notes` once the file is finished, as are texts cut to `max_chars`."""
    path = Path(path)
    fmt = file_format(path)
    if fmt in ("csv", "tsv"):
        table = _read_delimited(path, TABLE_FORMATS["." + fmt], text_column, None, None, max_chars)
        if notes is not None:
            notes.extend(table.notes)
        yield from table.texts
        return
    count = blank = cut = 0
    if fmt == "jsonl":
        for number, record in iter_json_objects(path):
            text = record.get(text_column)
            if not isinstance(text, str) or not text.strip():
                raise XDistilError(f"{path}: line {number}: no non-empty '{text_column}' text field")
            count += 1
            text, was_cut = clip(text.strip(), max_chars)
            cut += was_cut
            yield text
    else:
        for _, line in iter_lines(path):
            if not line.strip():
                blank += 1
                continue
            count += 1
            text, was_cut = clip(line.strip(), max_chars)
            cut += was_cut
            yield text
    if not count:
        raise XDistilError(f"{path}: no text; expected one example per line")
    if blank and notes is not None:
        notes.append(f"{path.name}: {blank} blank lines skipped")
    if cut and notes is not None:
        notes.append(clipped_note(path.name, cut, max_chars))


def read_unlabeled(path: str | Path, text_column: str = "text", max_chars: int = MAX_CHARS) -> Table:
    """Read unlabeled transfer text whole: one example per line, or a CSV/TSV/JSONL with a text column.

    Blank lines of a plain text file are skipped and counted in the table's notes.
    """
    notes: list[str] = []
    texts = list(iter_unlabeled(path, text_column, notes, max_chars))
    return Table(Path(path), texts, notes=notes)


def load_hub(name: str):
    """A `datasets` DatasetDict by hub name (or local dataset folder); any failure is one line."""
    try:
        import datasets

        return datasets.load_dataset(name)
    except Exception as err:  # the hub client raises many types; the user needs one line
        raise XDistilError(f"dataset '{name}': could not load from the hub ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None


def hub_split(loaded, name: str, split: str, columns: tuple[str, ...]):
    """One split of a loaded hub dataset (None when absent), refused in one line when a column is missing."""
    if split not in loaded:
        return None
    part = loaded[split]
    for column in columns:
        if column not in part.column_names:
            raise XDistilError(f"dataset '{name}' split '{split}': no column '{column}' in {part.column_names}")
    return part
