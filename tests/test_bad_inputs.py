"""Every case of the bad-input corpus (tests/bad_inputs/, table in docs/bad-input.md) through the CLI.

Each either succeeds with a documented, counted handling, or exits with code 2 and one line
naming the file, the line or field, and what was expected.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from test_cli import assert_one_line_error, xdistil

BAD = Path(__file__).parent / "bad_inputs"
GOOD = BAD / "utf8_bom.csv"


def _config(tmp_path: Path, teacher: Path, train: Path, dev: Path = GOOD, test: Path = GOOD, **teacher_settings) -> Path:
    values = {
        "out": str(tmp_path / "run"),
        "device": "cpu",
        "data": {"train": str(train), "dev": str(dev), "test": str(test)},
        "teacher": {"model": str(teacher), "epochs": 1, "max_length": 32, **teacher_settings},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


REFUSED = [
    ("empty.csv", "train", ["empty.csv: empty file; expected a header row"]),
    ("header_only.csv", "train", ["header_only.csv: only a header, no rows"]),
    ("missing_text_column.csv", "train", ["missing_text_column.csv: line 1: no column 'text'"]),
    ("missing_label_column.csv", "train", ["missing_label_column.csv: line 1: no column 'label'"]),
    ("wrong_delimiter.csv", "train", ["wrong_delimiter.csv: line 1: no column 'text'", "another delimiter"]),
    ("ragged_rows.csv", "train", ["ragged_rows.csv: line 3: 3 fields, expected 2"]),
    ("non_utf8.csv", "train", ["non_utf8.csv: line 3: bytes that are not UTF-8"]),
    ("empty_text_cell.csv", "train", ["empty_text_cell.csv: line 3: empty text in 'text'"]),
    ("empty_label.csv", "train", ["empty_label.csv: line 3: missing label in 'label'"]),
    ("nan_label.csv", "train", ["nan_label.csv: line 3: missing label in 'label'"]),
    ("unseen_label.csv", "test", ["unseen_label.csv: test label 'meh' (example 2) never occurs in train"]),
    ("one_class.csv", "train", ["one_class.csv: train has a single class 'pos'"]),
    ("broken_line.jsonl", "train", ["broken_line.jsonl: line 2: not valid JSON"]),
]


@pytest.mark.parametrize("name, role, fragments", REFUSED, ids=[case[0] for case in REFUSED])
def test_bad_data_file_is_refused_in_one_line(tmp_path, tiny_teacher, name, role, fragments):
    files = {"train": GOOD, "dev": GOOD, "test": GOOD, role: BAD / name}
    result = xdistil("finetune", str(_config(tmp_path, tiny_teacher, **files)))
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize("name", ["utf8_bom.csv", "crlf.csv"])
def test_bom_and_crlf_files_are_read_as_is(tmp_path, tiny_teacher, name):
    result = xdistil("finetune", str(_config(tmp_path, tiny_teacher, BAD / name, dev=BAD / "crlf.csv")))
    assert result.returncode == 0, result.stderr
    assert "data: train 4," in result.stderr


def test_lines_longer_than_max_length_are_truncated_and_counted(tmp_path, tiny_teacher):
    path = _config(tmp_path, tiny_teacher, BAD / "long_lines.csv", dev=BAD / "long_lines.csv")
    values = yaml.safe_load(path.read_text())
    values["distill"] = {"stages": [{"name": "soft", "losses": {"soft": 1.0}, "epochs": 1}]}
    values["evaluation"] = {"baseline": False, "latency_batch_sizes": []}
    path.write_text(yaml.safe_dump(values))
    result = xdistil("run", str(path))
    assert result.returncode == 0, result.stderr
    assert "teacher labels transfer: 4 texts longer than 32 word pieces were truncated" in result.stderr
    report = (tmp_path / "run" / "report.md").read_text()
    assert "- transfer: 4 texts longer than 32 word pieces were truncated" in report  # the count reaches the report


@pytest.mark.parametrize(
    "name, fragments",
    [
        ("unknown_key.yaml", ["unknown_key.yaml: unknown key 'studnet'"]),
        ("wrong_type.yaml", ["wrong_type.yaml: field 'distill.epochs'"]),
        ("unknown_arch.yaml", ["unknown_arch.yaml: field 'student': unknown student arch 'cnn'; expected one of bilstm"]),
        ("unknown_layer_group.yaml", ["unknown_layer_group.yaml: distill.stages[0] ('soft'): unknown layer group 'lstm' for a bilstm student"]),
    ],
)
def test_bad_config_is_refused_in_one_line(name, fragments):
    assert_one_line_error(xdistil("run", str(BAD / name)), *fragments)


def test_teacher_that_is_not_a_model(tmp_path):
    folder = tmp_path / "not_a_model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert_one_line_error(xdistil("finetune", str(_config(tmp_path, folder, GOOD))), "not_a_model", "could not load a model")
    missing = tmp_path / "gone"
    assert_one_line_error(xdistil("finetune", str(_config(tmp_path, missing, GOOD))), "gone", "folder does not exist")


def test_too_few_examples_to_carve_dev_is_refused(tmp_path, tiny_teacher):
    values = yaml.safe_load(_config(tmp_path, tiny_teacher, GOOD).read_text())
    values["data"].pop("dev")
    path = tmp_path / "carve.yaml"
    path.write_text(yaml.safe_dump(values))
    assert_one_line_error(xdistil("finetune", str(path)), "dev_size", "too few")
    shutil.rmtree(tmp_path / "run", ignore_errors=True)


@pytest.mark.parametrize(
    "name, fragments",
    [
        ("conll_wrong_columns.conll", ["conll_wrong_columns.conll: line 7: 2 columns, expected 3"]),
        ("conll_bad_tag.conll", ["conll_bad_tag.conll: line 4: tag 'X-VERB' is outside the tag scheme"]),
    ],
)
def test_bad_conll_is_refused_in_one_line(name, fragments):
    assert_one_line_error(xdistil("data", str(BAD / name)), *fragments)


def test_numeric_labels_are_one_class_by_value():
    result = xdistil("data", str(BAD / "numeric_labels.csv"))
    assert result.returncode == 0, result.stderr
    assert "labels: 0 2, 1 3" in result.stdout  # 1, 1.0, 01 -> '1'; 0, 0.0 -> '0' (as first seen)


def test_nfc_and_nfd_spellings_of_a_label_are_one_class():
    result = xdistil("data", str(BAD / "nfd_labels.csv"))
    assert result.returncode == 0, result.stderr
    assert "labels: caf\u00e9 2, other 1" in result.stdout


def test_near_duplicate_labels_are_kept_apart_with_a_warning():
    result = xdistil("data", str(BAD / "near_duplicate_labels.csv"))
    assert result.returncode == 0, result.stderr
    assert "note: labels 'Positive', 'positive' differ only in case, spacing or invisible characters" in result.stdout
    assert "note: labels 'nega\\u200btive', 'negative' differ only in case" in result.stdout


def test_a_list_label_is_refused_in_one_line():
    assert_one_line_error(xdistil("data", str(BAD / "list_label.jsonl")), "list_label.jsonl: line 2: label in 'label' is a JSON list")


def test_conll_stray_whitespace_is_read_and_counted():
    result = xdistil("data", str(BAD / "conll_stray_whitespace.conll"))
    assert result.returncode == 0, result.stderr
    assert "3 sentences, 5 tokens" in result.stdout
    assert "1 lines holding only spaces or tabs were read as sentence breaks" in result.stdout
    assert "tags converted from BIOES to IOB2" in result.stdout


def _tagging_config(tmp_path: Path, teacher: Path, train: Path, test: Path = BAD / "conll_good.conll") -> Path:
    values = {
        "task": "tagging",
        "out": str(tmp_path / "run"),
        "device": "cpu",
        "data": {"train": str(train), "dev": str(BAD / "conll_good.conll"), "test": str(test)},
        "teacher": {"model": str(teacher), "epochs": 1, "max_length": 32},
    }
    path = tmp_path / "tagging.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


TAGGING_REFUSED = [
    ("conll_unseen_type.conll", "test", ["conll_unseen_type.conll: test sentence 2: tag 'B-ORG' has an entity type never seen in train"]),
    ("conll_no_entities.conll", "train", ["conll_no_entities.conll: train has no entities"]),
    ("tagged_length_mismatch.jsonl", "train", ["tagged_length_mismatch.jsonl: line 1: 3 tokens but 2 tags"]),
]


@pytest.mark.parametrize("name, role, fragments", TAGGING_REFUSED, ids=[case[0] for case in TAGGING_REFUSED])
def test_bad_tagging_file_is_refused_in_one_line(tmp_path, tiny_teacher, name, role, fragments):
    files = {"train": BAD / "conll_good.conll", role: BAD / name}
    result = xdistil("finetune", str(_tagging_config(tmp_path, tiny_teacher, **files)))
    assert_one_line_error(result, *fragments)


def test_augmentation_is_refused_for_tagging(tmp_path):
    result = xdistil("finetune", str(BAD / "tagging_augment.yaml"))
    assert_one_line_error(result, "tagging_augment.yaml", "transfer.augment is for classification")


def test_an_uncertain_budget_is_refused_for_tagging(tmp_path):
    result = xdistil("finetune", str(BAD / "tagging_uncertain.yaml"))
    assert_one_line_error(result, "tagging_uncertain.yaml", "uncertain weighs one label per text")


def test_a_pooled_student_is_refused_for_tagging(tmp_path):
    result = xdistil("finetune", str(BAD / "tagging_pooled.yaml"))
    assert_one_line_error(result, "tagging_pooled.yaml", "student.arch pooled classifies whole texts")


def test_a_setfit_teacher_is_refused_for_tagging(tmp_path):
    result = xdistil("finetune", str(BAD / "tagging_setfit.yaml"))
    assert_one_line_error(result, "tagging_setfit.yaml", "teacher.recipe setfit pairs whole labeled texts")
