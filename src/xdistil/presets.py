"""Built-in run configs: the demo is the low-resource rotten_tomatoes setting with the MiniLM teacher."""

from __future__ import annotations

from pathlib import Path

from xdistil.config import DataConfig, RunConfig


def demo_config(out: str | Path = "runs/demo") -> RunConfig:
    """1,000 labeled snippets, 500 dev, 2,000 test (split by movie); everything else is unlabeled transfer text."""
    return RunConfig(
        out=Path(out),
        data=DataConfig(
            dataset="rotten_tomatoes",
            group_column="movie",
            test_size=2000,
            dev_size=500,
            train_size=1000,
            surplus_to_transfer=True,
            split_transfer_sentences=True,
        ),
    )
