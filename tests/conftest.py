"""Shared fixtures: a tiny BERT teacher built from a config (no downloads) and small labeled data."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# property tests draw the same examples on every run (CI included), so a failure replays exactly;
# HYPOTHESIS_PROFILE=explore draws new ones (and prints the seed of a failure)
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("explore", print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

POSITIVE = "great superb moving delightful brilliant charming funny warm clever gripping".split()
NEGATIVE = "dull boring awful tedious clumsy bland messy weak flat lifeless".split()
NEUTRAL = "the film movie story plot actor director scene it was a and with this its script".split()
PEOPLE = "alice bob carol dave erin frank".split()
PLACES = "paris london berlin rome madrid oslo".split()
FILLER = "met in visited saw went to from lives near".split()


def make_tagged(rng: random.Random, words: int = 6) -> tuple[list[str], list[str]]:
    """A synthetic sentence with people (PER, sometimes two words) and places (LOC), IOB2 tags."""
    tokens: list[str] = []
    tags: list[str] = []
    while len(tokens) < words:
        kind = rng.random()
        if kind < 0.25:
            tokens.append(rng.choice(PEOPLE))
            tags.append("B-PER")
            if rng.random() < 0.4:
                tokens.append(rng.choice(PEOPLE) + rng.choice(["", "s"]))
                tags.append("I-PER")
        elif kind < 0.45:
            tokens.append(rng.choice(PLACES))
            tags.append("B-LOC")
        else:
            tokens.append(rng.choice(FILLER + NEUTRAL[:4]))
            tags.append("O")
    return tokens, tags


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]]) -> Path:
    blocks = ["\n".join(f"{w} {t}" for w, t in zip(*s)) for s in sentences]
    path.write_text("-DOCSTART- O\n\n" + "\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def make_sentence(rng: random.Random, label: str) -> str:
    words = rng.sample(NEUTRAL, 5) + [rng.choice(POSITIVE if label == "pos" else NEGATIVE) for _ in range(2)]
    rng.shuffle(words)
    return " ".join(words)


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT encoder with a word-level WordPiece vocabulary, saved as a HF folder."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_teacher")
    words = sorted(set(POSITIVE + NEGATIVE + NEUTRAL + PEOPLE + PLACES + FILLER + ["unseen", "extra", "words"]))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {piece: i for i, piece in enumerate(specials + words + ["##s", "##ly"])}
    core = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = BertTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def other_encoder(tmp_path_factory) -> Path:
    """A second tiny BERT (3 layers, 24 wide) whose tokenizer splits words differently from the tiny
    teacher's: some words become two or three pieces, and the ids are in another order."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("other_encoder")
    whole = sorted(set(POSITIVE + NEGATIVE + NEUTRAL + FILLER + ["bob", "rome", "oslo"]), reverse=True)
    pieces = ["al", "##ice", "car", "##ol", "da", "##ve", "er", "##in", "fr", "##an", "##k", "par", "##is", "lon", "##don",
              "ber", "##lin", "mad", "##rid", "##s", "##ly"]
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    vocab = {piece: i for i, piece in enumerate(whole + pieces + specials)}
    core = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tokenizer = BertTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=24, num_hidden_layers=3, num_attention_heads=2, intermediate_size=48,
        max_position_embeddings=128, pad_token_id=vocab["[PAD]"],
    )
    BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def sentiment_files(tmp_path_factory) -> dict[str, Path]:
    """Labeled train/dev/test CSVs and an unlabeled transfer text file of separable synthetic snippets."""
    folder = tmp_path_factory.mktemp("data")
    rng = random.Random(7)

    def rows(n: int) -> list[tuple[str, str]]:
        return [(make_sentence(rng, label), label) for label in (["pos", "neg"] * n)[:n]]

    files = {
        "train": write_csv(folder / "train.csv", rows(60)),
        "dev": write_csv(folder / "dev.csv", rows(30)),
        "test": write_csv(folder / "test.csv", rows(40)),
    }
    transfer = folder / "transfer.txt"
    transfer.write_text("\n".join(make_sentence(rng, rng.choice(["pos", "neg"])) for _ in range(300)) + "\n", encoding="utf-8")
    files["transfer"] = transfer
    return files


@pytest.fixture(scope="session")
def tagging_files(tmp_path_factory) -> dict[str, Path]:
    """CoNLL train/dev/test of synthetic PER/LOC sentences (a few longer than the tiny teacher's
    32-piece limit) and an unlabeled transfer file, one sentence per line."""
    folder = tmp_path_factory.mktemp("tagging")
    rng = random.Random(11)

    def sentences(n: int) -> list[tuple[list[str], list[str]]]:
        return [make_tagged(rng, rng.choice([4, 6, 9, 40 if i % 10 == 0 else 7])) for i in range(n)]

    files = {
        "train": write_conll(folder / "train.conll", sentences(60)),
        "dev": write_conll(folder / "dev.conll", sentences(30)),
        "test": write_conll(folder / "test.conll", sentences(40)),
    }
    transfer = folder / "transfer.txt"
    transfer.write_text("\n".join(" ".join(make_tagged(rng, 7)[0]) for _ in range(300)) + "\n", encoding="utf-8")
    files["transfer"] = transfer
    return files


def tiny_run_config(tiny_teacher: Path, files: dict[str, Path], out: Path, **overrides):
    """A fast config for the tiny teacher: few epochs, small student, small chunks."""
    from xdistil.config import build_config

    values = {
        "out": str(out),
        "seed": 3,
        "device": "cpu",
        "data": {
            "train": str(files["train"]), "dev": str(files["dev"]), "test": str(files["test"]),
            "transfer": [str(files["transfer"])],
        },
        "teacher": {"model": str(tiny_teacher), "epochs": 10, "lr": 3e-3, "batch_size": 16, "max_length": 32, "patience": 10},
        "transfer": {"chunk_size": 64, "batch_size": 32},
        "student": {"emb_dim": 8, "hidden": 8},
        "distill": {
            "batch_size": 32, "epochs": 2, "patience": 2,
            "stages": [
                {"name": "representation", "losses": {"representation": 1.0}, "monitor": "dev_loss"},
                {"name": "soft", "losses": {"soft": 1.0}, "train": ["output"], "unfreeze": "gradual", "epochs": 1},
                {"name": "gold", "losses": {"gold": 1.0}, "data": "labeled", "epochs": 2},
            ],
        },
        "evaluation": {"baseline_epochs": 3, "latency_batch_sizes": [1, 32], "latency_repeats": 3},
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if name:
            values.setdefault(section, {})[name] = value
        else:
            values[section] = value
    return build_config(values, "test")
