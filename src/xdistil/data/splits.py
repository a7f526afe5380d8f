"""Seeded splits, optionally grouped so that one group (e.g. a movie) never straddles two splits."""

from __future__ import annotations

import random
from collections.abc import Sequence


def resolve_size(size: float, total: int) -> int:
    """A size below 1 is a fraction of total, otherwise a count."""
    return int(round(size * total)) if size < 1 else int(size)


def carve(
    n: int, size: int, seed: int, groups: Sequence[str] | None = None, exact: bool = False
) -> tuple[list[int], list[int]]:
    """Split indices 0..n-1 into (carved, rest) with about `size` carved, by whole groups when given.

    Groups are shuffled with the seed and taken whole until at least `size` examples are carved,
    so the carved part can exceed `size` by less than one group; with `exact`, the last group is
    cut so exactly `size` are carved (for splits where a shared group leaks nothing).
    """
    rng = random.Random(seed)
    if groups is None:
        order = list(range(n))
        rng.shuffle(order)
        return sorted(order[:size]), sorted(order[size:])
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    keys = sorted(members)
    rng.shuffle(keys)
    carved: list[int] = []
    rest: list[int] = []
    for key in keys:
        (carved if len(carved) < size else rest).extend(members[key])
    if exact and len(carved) > size:
        rest.extend(carved[size:])
        carved = carved[:size]
    return sorted(carved), sorted(rest)
