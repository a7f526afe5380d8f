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


@pytest.mark.parametrize("name,content", [
    ("u.csv", "id,body\n1,a long first text\n2,ok\n,\n3,another long one\n"),
    ("u.tsv", "id\tbody\n1\ta long first text\n2\tok\n\t\n3\tanother long one\n"),
    ("u.jsonl", '{"body": "a long first text"}\n{"body": " ok "}\n\n{"body": "another long one"}\n'),
    ("u.txt", "a long first text\n ok \n\n  \nanother long one\n"),
])
def test_unlabeled_files_stream_their_texts_cut_and_counted(tmp_path, name, content):
    from xdistil.data.readers import iter_unlabeled

    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    notes: list[str] = []
    texts = list(iter_unlabeled(path, text_column="body", notes=notes, max_chars=10))
    assert texts == ["a long fir", "ok", "another lo"]
    cut_note = "u.{}: 2 texts longer than 10 characters were cut to that length (data.max_chars)".format(name.split(".")[1])
    assert cut_note in notes
    if name.endswith(".txt"):
        assert notes == ["u.txt: 2 blank lines skipped", cut_note]
    else:
        assert len(notes) == 1
    assert read_unlabeled(path, text_column="body", max_chars=10).texts == texts
    assert list(iter_unlabeled(path, text_column="body")) == ["a long first text", "ok", "another long one"]


def test_unlabeled_files_without_text_fail_on_the_line(tmp_path):
    from xdistil.data.readers import iter_unlabeled

    (tmp_path / "a.jsonl").write_text('{"text": "fine"}\n{"body": "no text key"}\n')
    with pytest.raises(XDistilError, match=r"a\.jsonl: line 2: no non-empty 'text' text field"):
        list(iter_unlabeled(tmp_path / "a.jsonl"))
    (tmp_path / "b.txt").write_text("\n \n")
    with pytest.raises(XDistilError, match=r"b\.txt: no text; expected one example per line"):
        list(iter_unlabeled(tmp_path / "b.txt"))
    (tmp_path / "c.txt").write_bytes(b"fine\nbad \xff byte\n")
    with pytest.raises(XDistilError, match=r"c\.txt: line 2: bytes that are not UTF-8 \(at byte 4 of the line\)"):
        list(iter_unlabeled(tmp_path / "c.txt"))


def test_labeled_rows_keep_line_numbers_in_errors_and_count_cut_texts(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("text,label,movie\nfirst text here,pos,m1\n\nsecond,neg,m2\n")
    table = read_labeled(path, group_column="movie", max_chars=5)
    assert table.texts == ["first", "secon"] and table.labels == ["pos", "neg"] and table.groups == ["m1", "m2"]
    assert table.notes == ["l.csv: 2 texts longer than 5 characters were cut to that length (data.max_chars)"]
    assert read_labeled(path).notes == [] and read_labeled(path).groups is None
    (tmp_path / "m.jsonl").write_text('{"text": "a", "label": "x"}\n{"label": "y"}\n')
    with pytest.raises(XDistilError, match=r"m\.jsonl: line 2: no 'text' field \(set the text column name\)"):
        read_labeled(tmp_path / "m.jsonl")
    (tmp_path / "n.csv").write_text("text,label\nfine,pos\nshort,\n")
    with pytest.raises(XDistilError, match=r"n\.csv: line 3: missing label in 'label'; every labeled row needs one"):
        read_labeled(tmp_path / "n.csv")
    (tmp_path / "o.csv").write_text("text,label\nfine,pos\n   ,neg\n")
    with pytest.raises(XDistilError, match=r"o\.csv: line 3: empty text in 'text'; expected non-empty text"):
        read_labeled(tmp_path / "o.csv")
    (tmp_path / "p.tsv").write_text("text,label\nfine,pos\n")
    with pytest.raises(XDistilError, match=r"p\.tsv: line 1: no column 'text' in header \['text,label'\]; the header looks like another delimiter"):
        read_labeled(tmp_path / "p.tsv")
    (tmp_path / "q.csv").write_text("text,label\nfine,pos,extra\n")
    with pytest.raises(XDistilError, match=r"q\.csv: line 2: 3 fields, expected 2 as in the header"):
        read_labeled(tmp_path / "q.csv")


@pytest.mark.parametrize("value,missing", [(None, True), (float("nan"), True), ("", True), (" nan ", True), ("None", True),
                                           ("null", True), ("NaN", True), (0, False), ("0", False), ("none", False)])
def test_missing_labels_are_recognised(value, missing):
    from xdistil.data.readers import _is_missing

    assert _is_missing(value) is missing
