"""The result of every decode: the text, the decoder that won and how many characters were lost."""

from __future__ import annotations

from dataclasses import dataclass

REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Decoded:
    """A decoded text, the decoder that produced it and the number of U+FFFD it had to emit."""

    text: str
    decoder: str
    replaced: int
