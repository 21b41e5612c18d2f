"""Capped exponential backoff with full jitter: the one retry policy used everywhere.

Full jitter (a uniform delay between 0 and the capped exponential) spreads retries of many
containers or workers apart, so a recovering Docker daemon or cluster is not hit in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True)
class Backoff:
    base_s: float = 0.1
    cap_s: float = 30.0
    attempt: int = 0

    def next_delay_s(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return random.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0
