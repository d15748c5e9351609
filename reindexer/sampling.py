"""A seeded uniform sample of a stream of unknown length (reservoir sampling, Algorithm R).

Used where one pass must keep a few items drawn fairly from all it saw: the plan's estimate
(``ScanResult.sample``), verification's re-embedded points and adoption's cosine check.
"""

from __future__ import annotations

import random
from typing import Generic, TypeVar

T = TypeVar("T")


class Reservoir(Generic[T]):
    """After n offers, each item is kept with probability size/n; the same stream and seed, the same sample."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.rng = random.Random(seed)
        self.chosen: list[T] = []
        self.met = 0

    def offer(self, item: T) -> None:
        self.met += 1
        if len(self.chosen) < self.size:
            self.chosen.append(item)
        else:
            slot = self.rng.randrange(self.met)
            if slot < self.size:
                self.chosen[slot] = item
