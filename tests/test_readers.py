"""Readers: every supported format reads, and bad files fail with a one-line error naming file and line."""

from __future__ import annotations

import bz2
import json

import pytest

from xdistil.data.readers import read_labeled, read_unlabeled
from xdistil.errors import XDistilError


def test_csv_tsv_jsonl_read_the_same_rows(tmp_path):
    rows = [("good film", "pos"), ("bad, slow film", "neg"), ('a "quoted" one', "pos")]
    (tmp_path / "a.csv").write_text("text,label\n" + "".join(f'"{t.replace(chr(34), chr(34) * 2)}",{l}\n' for t, l in rows))
    (tmp_path / "a.tsv").write_text("text\tlabel\n" + "".join(f'"{t.replace(chr(34), chr(34) * 2)}"\t{l}\n' for t, l in rows))
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in rows))
    for name in ("a.csv", "a.tsv", "a.jsonl"):
        table = read_labeled(tmp_path / name)
        assert table.texts == [t for t, _ in rows], name
        assert table.labels == [l for _, l in rows], name


def test_custom_columns_groups_and_numeric_labels(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"review": "fine", "stars": 1, "movie": "m1"}\n{"review": "poor", "stars": 0.0, "movie": "m2"}\n')
    table = read_labeled(path, text_column="review", label_column="stars", group_column="movie")
    assert table.labels == ["1", "0"]
    assert table.groups == ["m1", "m2"]


def test_bom_crlf_and_bz2_are_accepted(tmp_path):
    raw = "\ufefftext,label\r\nhello there,pos\r\ngoodbye now,neg\r\n".encode("utf-8")
    (tmp_path / "bom.csv").write_bytes(raw)
    (tmp_path / "bom.csv.bz2").write_bytes(bz2.compress(raw))
    for name in ("bom.csv", "bom.csv.bz2"):
        table = read_labeled(tmp_path / name)
        assert table.texts == ["hello there", "goodbye now"]
        assert table.labels == ["pos", "neg"]


def test_unicode_line_separators_stay_inside_a_text(tmp_path):
    path = tmp_path / "u.jsonl"
    text = "first part\u2028second part\x85third"
    path.write_text(json.dumps({"text": text, "label": "pos"}, ensure_ascii=False) + "\r\n", encoding="utf-8")
    assert read_labeled(path).texts == [text]
    plain = tmp_path / "u.txt"
    plain.write_text("a\u2028b\nc\n", encoding="utf-8")
    assert read_unlabeled(plain).texts == ["a\u2028b", "c"]


def test_unlabeled_text_skips_and_counts_blank_lines(tmp_path):
    path = tmp_path / "u.txt"
    path.write_text("one\n\n  \ntwo\nthree\n")
    table = read_unlabeled(path)
    assert table.texts == ["one", "two", "three"]
    assert table.notes == ["u.txt: 2 blank lines skipped"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.csv", "", "empty file"),
        ("header.csv", "text,label\n", "only a header"),
        ("nocol.csv", "body,label\nx,pos\n", "no column 'text'"),
        ("delim.csv", "text;label\nx;pos\n", "another delimiter"),
        ("ragged.csv", "text,label\nx,pos\ny,neg,extra\n", "line 3: 3 fields, expected 2"),
        ("emptytext.csv", "text,label\nx,pos\n ,neg\n", "line 3: empty text"),
        ("nolabel.csv", "text,label\nx,pos\ny,\n", "line 3: missing label"),
        ("nanlabel.csv", "text,label\nx,pos\ny,NaN\n", "line 3: missing label"),
        ("broken.jsonl", '{"text": "a", "label": "p"}\n{"text": "b", "label"\n', "line 2: not valid JSON"),
    ],
)
def test_bad_labeled_files_name_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(XDistilError) as err:
        read_labeled(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ngood,pos\ncaf\xe9,neg\n".encode("latin-1"))
    with pytest.raises(XDistilError, match=r"line 3: bytes that are not UTF-8"):
        read_labeled(path)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(XDistilError, match="file not found"):
        read_labeled(tmp_path / "nope.csv")
    (tmp_path / "x.parquet").write_text("x")
    with pytest.raises(XDistilError, match="unsupported labeled format"):
        read_labeled(tmp_path / "x.parquet")


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).map(str.strip).filter(bool)
_label = st.sampled_from(["pos", "neg", "neutral", "a,b", 'q"t'])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_text, _label), min_size=1, max_size=15), st.sampled_from(["csv", "tsv", "jsonl"]))
def test_any_valid_file_round_trips(tmp_path_factory, rows, fmt):
    import csv as csv_module

    path = tmp_path_factory.mktemp("rt") / f"data.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in rows), encoding="utf-8")
    else:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv_module.writer(handle, delimiter="," if fmt == "csv" else "\t")
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    table = read_labeled(path)
    assert table.texts == [t for t, _ in rows]
    assert table.labels == [l for _, l in rows]


def test_labels_that_are_one_number_become_one_class_spelled_as_first_seen(tmp_path):
    from xdistil.data.readers import Table, unify_labels

    train = Table(tmp_path / "train.csv", ["a", "b", "c", "d"], ["01", "2", "pos", "1e0"])
    dev = Table(tmp_path / "dev.csv", ["e", "f", "g"], ["1.0", "2.00", "inf"])
    assert unify_labels([train, None, dev, Table(tmp_path / "t.txt", ["x"])]) == []
    assert train.labels == ["01", "2", "pos", "01"]  # 1e0 is the number 1: spelled as train first wrote it
    assert dev.labels == ["01", "2", "inf"]  # 'inf' is not a finite number: a label like any other


def test_labels_differing_only_in_case_spacing_or_invisible_characters_are_kept_apart_with_a_warning(tmp_path):
    from xdistil.data.readers import Table, unify_labels

    train = Table(tmp_path / "train.csv", list("abcdef"), ["Pos", "pos", "very good", "verygood", "ne\u200bg", "neg"])
    warnings = unify_labels([train])
    assert train.labels == ["Pos", "pos", "very good", "verygood", "ne\u200bg", "neg"]  # nothing merged
    assert len(warnings) == 3
    assert "'Pos', 'pos'" in warnings[0] and "'very good', 'verygood'" in warnings[1] and "'ne\\u200bg', 'neg'" in warnings[2]
    assert all("kept as separate classes" in w for w in warnings)
    assert unify_labels([Table(tmp_path / "x.csv", ["a", "b"], ["pos", "neg"])]) == []


def test_text_key_ignores_unicode_form_and_all_whitespace():
    from xdistil.data.readers import text_key

    assert text_key("A  film\u00a0that\tworks\n") == text_key("Afilmthatworks") == "Afilmthatworks"
    assert text_key("ﬁne") == text_key("fine")  # NFKC folds the ligature
    assert text_key("Fine") != text_key("fine")  # case is kept: a different text


def test_clip_cuts_only_longer_texts():
    from xdistil.data.readers import clip

    assert clip("abcdef", 6) == ("abcdef", False)
    assert clip("abcdefg", 6) == ("abcdef", True)
