"""Deterministic draws for one generated entity, cheap to start.

Every entity the simulator serves is drawn from a generator seeded by ``(seed, kind, id)``.
``random.Random`` spends about 6 us seeding its Mersenne Twister (624 words of state) before
the first draw, and a media answer seeds one per item: 20 to 100 per call, most of the
simulator's CPU, on the cores the stage it serves is measured on. Here the seed's BLAKE2b
digest is the state: 64 bytes give eight 64-bit words, and each further eight come from
hashing the seed with a block number. An entity takes a dozen draws at most.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

_WORDS = struct.Struct("<8Q")
_UNIT = 2.0**-53


class Draws:
    """The draws ``random.Random`` offers that the generated data uses, from one seed."""

    __slots__ = ("_block", "_seed", "_words")

    def __init__(self, seed: str) -> None:
        self._seed = seed.encode()
        self._block = 0
        self._words: list[int] = []

    def _word(self) -> int:
        if not self._words:
            digest = hashlib.blake2b(
                self._seed, digest_size=64, salt=self._block.to_bytes(16, "little")
            ).digest()
            self._words = list(_WORDS.unpack(digest))
            self._block += 1
        return self._words.pop()

    def random(self) -> float:
        """A float in [0, 1), from the word's top 53 bits."""
        return (self._word() >> 11) * _UNIT

    def randrange(self, stop: int) -> int:
        """An int in [0, stop): a 64-bit word modulo ``stop``. Its bias is ``stop / 2**64``
        at most, below 2**-37 for every range the data draws from (10**8 is the widest)."""
        if stop <= 0:
            raise ValueError(f"empty range for randrange({stop})")
        return self._word() % stop

    def randint(self, low: int, high: int) -> int:
        """An int in [low, high], both ends included."""
        if high < low:
            raise ValueError(f"empty range for randint({low}, {high})")
        return low + self.randrange(high - low + 1)

    def choice(self, options: Sequence[T]) -> T:
        if not options:
            raise IndexError("cannot choose from an empty sequence")
        return options[self.randrange(len(options))]

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()
