"""Safe run folders and a CLI that never surprises, through a real `xdistil` process: exit codes,
tamper-evident students, the leakage guard, early validation, predict that lines up, label
normalisation, bounded text length, reproducible configs and threads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_run_config, write_csv
from test_cli import assert_one_line_error, xdistil
from xdistil import load_student
from xdistil.config import config_to_dict, load_config
from xdistil.data.corpus import load_corpus
from xdistil.data.readers import read_labeled
from xdistil.errors import XDistilError
from xdistil.pipeline import Run


@pytest.fixture(scope="module")
def finished(tiny_teacher, sentiment_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("safety") / "run"
    Run(tiny_run_config(tiny_teacher, sentiment_files, out, evaluation={"baseline": False, "latency_batch_sizes": []})).run()
    return out


def _config_file(tmp_path: Path, values: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


# ---- exit codes ----
@pytest.mark.parametrize("args, fragment", [
    (["--bogus"], "No such option: --bogus"),
    (["predict"], "Missing argument"),
    (["run", "--seed", "abc"], "Invalid value for '--seed'"),
])
def test_usage_errors_exit_2_with_the_usage_line(args, fragment):
    result = xdistil(*args)
    assert result.returncode == 2, result.stderr
    assert "Usage: xdistil" in result.stderr and fragment in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_version_exits_0():
    from xdistil import __version__

    result = xdistil("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"xdistil {__version__}"


# ---- the run folder ----
def test_overwrite_of_a_foreign_folder_deletes_nothing(tmp_path, tiny_teacher, sentiment_files):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    values = config_to_dict(tiny_run_config(tiny_teacher, sentiment_files, precious))
    result = xdistil("run", str(_config_file(tmp_path, values)), "--out", str(precious), "--overwrite")
    assert_one_line_error(result, "not an xdistil run folder", "nothing was deleted")
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]


def test_out_that_is_a_file_is_one_line(tmp_path, tiny_teacher, sentiment_files):
    afile = tmp_path / "results.txt"
    afile.write_text("x")
    values = config_to_dict(tiny_run_config(tiny_teacher, sentiment_files, afile))
    assert_one_line_error(xdistil("finetune", str(_config_file(tmp_path, values))), "results.txt: --out names an existing file")


def test_saved_config_reproduces_the_run_from_any_directory(finished, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    saved = yaml.safe_load((finished / "config.yaml").read_text())
    assert all(Path(p).is_absolute() for p in [saved["out"], saved["data"]["train"], *saved["data"]["transfer"]])
    result = xdistil("evaluate", str(finished / "config.yaml"), cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert not any(elsewhere.iterdir())  # nothing written where the command ran


def test_relative_paths_in_a_config_file_are_relative_to_its_folder(tmp_path, sentiment_files, tiny_teacher, monkeypatch):
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    for name in ("train", "dev", "test"):
        shutil.copy(sentiment_files[name], folder / "data" / f"{name}.csv")
    (folder / "cfg.yaml").write_text(yaml.safe_dump({
        "data": {"train": "data/train.csv", "dev": "data/dev.csv", "test": "data/test.csv"}, "teacher": {"model": str(tiny_teacher)},
    }))
    monkeypatch.chdir(tmp_path)
    config = load_config(folder / "cfg.yaml")
    assert config.data.train == (folder / "data" / "train.csv").resolve()
    assert config.out == (folder / "runs" / "cfg").resolve()  # no `out`: a folder of its own beside the config


def test_a_flags_only_run_gets_its_own_folder(tmp_path, tiny_teacher):
    # a train file too small to carve a test split stops the run once its folder is made: only the folder's name matters here
    args = ("run", "--teacher", str(tiny_teacher), "--train", str(Path(__file__).parent / "bad_inputs" / "one_class.csv"))
    assert_one_line_error(xdistil(*args, cwd=tmp_path), "too few examples")
    again = xdistil(*args, cwd=tmp_path)
    assert again.returncode == 2 and "same config as the last run" in again.stderr
    made = list((tmp_path / "runs").iterdir())
    assert len(made) == 1 and made[0].name.startswith("one_class-")  # the same flags resume the same folder, never runs/demo


def test_threads_sets_torch_threads_for_the_run(tiny_teacher, sentiment_files, tmp_path):
    before = torch.get_num_threads()
    try:
        Run(tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "t", threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ---- validated before anything trains ----
def test_out_of_range_teacher_layer_fails_before_the_teacher_trains(tmp_path, tiny_teacher, sentiment_files):
    out = tmp_path / "run"
    values = config_to_dict(tiny_run_config(tiny_teacher, sentiment_files, out, teacher__layer=99))
    result = xdistil("run", str(_config_file(tmp_path, values)))
    assert_one_line_error(result, "teacher.layer: 99 is out of range; the teacher's hidden states are 0-2")
    assert not out.exists()  # refused before the run folder was made


def test_transformer_student_with_more_layers_than_its_encoder_fails_early(tmp_path, tiny_teacher, sentiment_files):
    out = tmp_path / "run"
    values = config_to_dict(tiny_run_config(tiny_teacher, sentiment_files, out))
    values["student"] = {"arch": "transformer", "encoder": "teacher", "layers": 5}
    values["distill"] = {"stages": [{"name": "soft", "losses": {"soft": 1.0}, "epochs": 1}]}
    assert_one_line_error(xdistil("run", str(_config_file(tmp_path, values))), "student.layers: 5 layers asked for; the encoder has 2")
    assert not out.exists()


def test_a_vocabulary_smaller_than_the_embedding_width_still_trains(tiny_teacher, sentiment_files, tmp_path):
    config = tiny_run_config(tiny_teacher, sentiment_files, tmp_path / "wide", student={"emb_dim": 400, "hidden": 8},
                             evaluation={"baseline": False, "latency_batch_sizes": []})
    made = Run(config).execute(until="distill")
    assert len(made.vocab) < 400
    assert made.student.model.embedding.weight.shape == (len(made.vocab), 400)


# ---- tamper-evident students ----
def _student_copy(finished: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "student"
    shutil.copytree(finished / "student", copy)
    return copy


def test_an_intact_student_predicts(finished):
    result = xdistil("predict", str(finished / "student"), "a great film")
    assert result.returncode == 0, result.stderr


def test_a_student_without_its_tokenizer_is_refused(finished, tmp_path):
    student = _student_copy(finished, tmp_path)
    (student / "tokenizer.json").unlink()
    assert_one_line_error(xdistil("predict", str(student), "a great film"), "tokenizer.json: missing")


def test_a_student_with_a_flipped_weight_byte_is_refused(finished, tmp_path):
    student = _student_copy(finished, tmp_path)
    weights = bytearray((student / "model.safetensors").read_bytes())
    weights[-5] ^= 0x01
    (student / "model.safetensors").write_bytes(bytes(weights))
    assert_one_line_error(xdistil("predict", str(student), "a great film"), "model.safetensors: altered since the student was saved")


def test_a_student_with_a_shortened_label_list_is_refused(finished, tmp_path):
    student = _student_copy(finished, tmp_path)
    meta = json.loads((student / "config.json").read_text())
    meta["label_names"] = meta["label_names"][:1]
    (student / "config.json").write_text(json.dumps(meta, indent=2))
    assert_one_line_error(xdistil("predict", str(student), "a great film"), "config.json: altered")
    # with the checksum made to match, the consistency check still refuses it
    from xdistil.manifest import sha256 as _sha256

    manifest = json.loads((student / "manifest.json").read_text())
    manifest["sha256"]["config.json"] = _sha256(student / "config.json")
    (student / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(xdistil("predict", str(student), "a great film"), "1 label names for a student with 2 outputs")


def test_a_student_without_a_manifest_is_refused(finished, tmp_path):
    student = _student_copy(finished, tmp_path)
    (student / "manifest.json").unlink()
    with pytest.raises(XDistilError, match="manifest.json: missing"):
        load_student(student)


# ---- predict lines up with its input ----
def test_predict_input_gives_one_line_per_input_line(finished, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("a great film\n\n   \nawful boring mess\n\n")
    result = xdistil("predict", str(finished / "student"), "--input", str(source))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")[:-1]
    assert len(lines) == 5 == len(source.read_text().split("\n")[:-1])
    assert lines[1] == lines[2] == lines[4] == "" and lines[0] in ("pos", "neg") and lines[3] in ("pos", "neg")
    assert "note: 3 empty input text(s) (number 2, 3, 5)" in result.stderr
    probs = xdistil("predict", str(finished / "student"), "--input", str(source), "--probabilities")
    rows = [json.loads(line) for line in probs.stdout.splitlines()]
    assert len(rows) == 5 and rows[1]["label"] is None and rows[1]["probabilities"] is None


def test_predict_api_takes_a_string_as_one_text_and_an_empty_list(finished):
    student = load_student(finished / "student")
    assert len(student.predict("a great film")) == 1
    assert student.predict([]) == [] and student.predict_proba([]).shape == (0, 2)


# ---- the leakage guard ----
def test_transfer_file_that_is_the_test_file_is_dropped_and_counted(tmp_path, tiny_teacher, sentiment_files):
    test_as_text = tmp_path / "test_texts.txt"
    test_as_text.write_text("\n".join(read_labeled(sentiment_files["test"]).texts) + "\nan unseen extra line of text\n")
    files = {**sentiment_files, "transfer": test_as_text}
    out = tmp_path / "run"
    values = config_to_dict(tiny_run_config(tiny_teacher, files, out))
    result = xdistil("finetune", str(_config_file(tmp_path, values)))
    assert result.returncode == 0, result.stderr
    assert "40 transfer texts are also dev/test texts; dropped (data.transfer_overlap: drop)" in result.stderr
    data = json.loads((out / "data.json").read_text())
    assert data["transfer_overlap"] == {"policy": "drop", "count": 40} and data["sizes"]["transfer"] == 1
    values["data"]["transfer_overlap"] = "error"
    values["out"] = str(tmp_path / "strict")
    assert_one_line_error(xdistil("finetune", str(_config_file(tmp_path, values))), "test_texts.txt: the transfer text", "leakage")


def test_overlap_is_found_through_whitespace_and_unicode_differences(tmp_path, sentiment_files):
    from xdistil.config import DataConfig

    text = read_labeled(sentiment_files["dev"]).texts[0]
    variant = tmp_path / "t.txt"
    variant.write_text("  " + text.replace(" ", "   \u00a0") + "\n" + "fresh words\n")
    corpus = load_corpus(DataConfig(train=sentiment_files["train"], dev=sentiment_files["dev"], test=sentiment_files["test"],
                                    transfer=[variant]))
    assert corpus.transfer.overlap_count == 1 and list(corpus.transfer) == ["fresh words"]


def test_repeated_transfer_texts_are_labeled_once_when_asked_and_kept_by_default(tmp_path, sentiment_files):
    from xdistil.config import DataConfig

    train_text = read_labeled(sentiment_files["train"]).texts[0]
    transfer = tmp_path / "t.txt"
    transfer.write_text(f"{train_text.upper()}\nsome fresh words\n{' ' + train_text}\nsome   fresh words\nother words\n")
    files = {"train": sentiment_files["train"], "dev": sentiment_files["dev"], "test": sentiment_files["test"], "transfer": [transfer]}
    kept = load_corpus(DataConfig(**files))
    assert len(list(kept.transfer)) == 5 and kept.transfer.repeat_count == 0
    dropped = load_corpus(DataConfig(**files, transfer_duplicates="drop"))
    assert list(dropped.transfer) == [train_text.upper(), "some fresh words", "other words"]  # case is kept apart, as by the overlap guard
    assert dropped.transfer.repeat_count == 2
    assert "2 transfer texts repeat a train text or an earlier transfer text; dropped (data.transfer_duplicates: drop)" in " ".join(dropped.notes)
    assert dropped.fingerprint("classification") != kept.fingerprint("classification")


# ---- labels and long texts ----
def test_numeric_labels_are_one_class_by_value_and_written_as_in_train(tmp_path):
    from xdistil.config import DataConfig

    rows = [("good film", "1"), ("bad film", "0"), ("nice film", "1.0"), ("poor film", "00"), ("fine film", "01")] * 4
    train = write_csv(tmp_path / "train.csv", rows)
    test = tmp_path / "test.jsonl"
    test.write_text("\n".join(json.dumps({"text": t, "label": v}) for t, v in [("ok film", 1.0), ("meh film", 0)]) + "\n")
    corpus = load_corpus(DataConfig(train=train, dev=train, test=test))
    assert corpus.label_names == ["0", "1"]
    assert corpus.test.labels == [1, 0]


def test_texts_longer_than_max_chars_are_cut_and_counted(tmp_path, sentiment_files):
    from xdistil.config import DataConfig

    long_file = tmp_path / "long.txt"
    long_file.write_text("word " * 50_000 + "\nshort line\n")
    corpus = load_corpus(DataConfig(train=sentiment_files["train"], dev=sentiment_files["dev"], test=sentiment_files["test"],
                                    transfer=[long_file], max_chars=1000))
    assert [len(t) for t in corpus.transfer] == [1000, 10]
    assert any("1 texts longer than 1,000 characters were cut" in note for note in corpus.notes)
