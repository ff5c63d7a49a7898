"""Text helpers shared by indexing, querying and the budget of results: words, query terms, sentences."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)

# Function words that carry no topic; removing them keeps OR-queries selective and fast.
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i i'm i've i'd i'll if in into is it it's its itself just let's me more most
    my myself no nor not now of off on once only or other ought our ours ourselves out over own same she should
    so some such than that that's the their theirs them themselves then there these they this those through to
    too under until up very was we were what what's when where which while who whom why will with would you
    your yours yourself yourselves tell told know say said ok okay yes yeah""".split()
)


def content_words(text: str) -> list[str]:
    """Lower-case words of ``text`` without stop words, in order, repeats kept."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


def is_word(text: str) -> bool:
    """Whether ``text`` is exactly one word as ``content_words`` finds them."""
    return _WORD.fullmatch(text) is not None


def query_terms(text: str, limit: int = 32) -> list[str]:
    """Distinct lower-case words of ``text`` minus stop words, in order of first appearance."""
    return list(dict.fromkeys(content_words(text)))[:limit]


@cache
def _segmenter() -> Any:
    """The segmenter of sentencex, imported on first use (a compiled module most requests never need)."""
    from sentencex import segment

    return segment


def sentences(text: str, language: str = "en") -> list[str]:
    """``text`` split into sentences and lines, verbatim: joined again they are ``text`` exactly.

    Sentence boundaries come from sentencex (Wikimedia's rule-based segmenter: abbreviations such as "Dr." or
    "p.m." and decimals do not end a sentence); each sentence keeps the whitespace that follows it.
    """
    if not text:
        return []
    return [piece for piece in _segmenter()(language, text) if piece]
