"""Text helpers shared by indexing, querying and the budget of results: words, query terms, sentences."""

from __future__ import annotations

import re
from datetime import datetime
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


_MONTHS = "January February March April May June July August September October November December".split()


def date_words(moment: datetime) -> str:
    """The calendar day of ``moment`` in words, in its own offset: "8 May 2023".

    Stores index a turn's date words beside its text (full text only: the returned text and the vector are the
    turn's own), so a question that names a day ("what did I do on 8 May, 2023?") finds what was said that day.
    Month names are English and fixed, whatever the process locale (``%B`` is not).
    """
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


@cache
def _segmenter() -> Any:
    """The segmenter of sentencex, imported on first use (a compiled module most requests never need)."""
    from sentencex import segment

    return segment


def sentences(text: str, language: str = "en") -> list[str]:
    """``text`` split into sentences, verbatim: joined again they are ``text`` exactly.

    Sentence boundaries come from sentencex (Wikimedia's rule-based segmenter: abbreviations such as "Dr." or
    "p.m." and decimals do not end a sentence); each sentence keeps the whitespace that follows it. A blank line
    ends a sentence, a single line break does not (``line_sentences`` splits at every one).
    """
    if not text:
        return []
    return [piece for piece in _segmenter()(language, text) if piece]


def line_sentences(text: str, language: str = "en") -> list[str]:
    """``text`` split into lines, then each line into ``sentences``, verbatim: joined again they are ``text``."""
    return [piece for line in text.splitlines(keepends=True) for piece in sentences(line, language)]


# -- word forms, for reflection and the local chat engine ----------------------------------------------------------
_TYPOGRAPHIC = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})
_WORD_PART = re.compile(r"[^\W_]+", re.UNICODE)
# Parts of speech tried in this order when a word is read without context: a verb's lemma first ("painting",
# "painted" -> "paint"), so that the forms of one word meet.
_LEMMA_ORDER = ("VERB", "AUX", "NOUN", "ADJ", "ADV", "PROPN")


def plain(text: str) -> str:
    """``text`` with typographic apostrophes and quotes as ASCII ones (U+2019 -> ')."""
    return text.translate(_TYPOGRAPHIC)


def words(text: str) -> list[str]:
    """The words of ``text`` as ``content_words`` finds them, case kept, stop words kept."""
    return _WORD.findall(plain(text))


def word_parts(text: str) -> list[str]:
    """Lower-case runs of letters and digits ("user's" -> "user", "s"): a normal form for comparing texts."""
    return _WORD_PART.findall(text.lower())


@cache
def _lemmas(word: str) -> dict[str, tuple[str, ...]]:
    from lemminflect import getAllLemmas  # type: ignore[import-untyped]

    found: dict[str, tuple[str, ...]] = getAllLemmas(word)
    return found


@cache
def lemma(word: str) -> str:
    """The dictionary form of a lower-case word read alone (lemminflect): "went" -> "go", "buses" -> "bus".

    A verb's form comes first, so "painting" and "paintings" -> "paint". A word it does not know is its own lemma.
    """
    base = _base(word)
    return base if base == word else _base(base)  # "paintings" -> "painting" -> "paint"


def _base(word: str) -> str:
    found = _lemmas(word)
    for pos in _LEMMA_ORDER:
        if pos in found:
            return found[pos][0]
    return word


def lemmas(text: str) -> list[str]:
    """The lemmas of ``text``'s content words (``content_words``), in order, repeats kept."""
    return [lemma(w) for w in content_words(plain(text))]


def singular(noun: str) -> str:
    """The singular of an English noun, case kept ("buses" -> "bus", "Children" -> "Child"); unknown words as is."""
    from lemminflect import getLemma

    found = getLemma(noun.lower(), upos="NOUN", lemmatize_oov=False)
    if not found or not found[0]:
        return noun
    base = str(found[0])
    return base[:1].upper() + base[1:] if noun[:1].isupper() else base


def third_person(verb: str) -> str | None:
    """The third person singular present of a verb ("go" -> "goes", "have" -> "has", "be" -> "is").

    None when lemminflect does not know the word as a verb.
    """
    from lemminflect import getInflection

    low = verb.lower()
    if "VERB" not in _lemmas(low) and "AUX" not in _lemmas(low):
        return None
    found = getInflection(low, tag="VBZ")
    return found[0] if found else None


def is_past(verb: str) -> bool:
    """Whether a lower-case word is the simple past of a verb ("lost", "went", "adopted")."""
    from lemminflect import getInflection

    base = _lemmas(verb).get("VERB")
    if not base:
        return False
    return verb in (getInflection(base[0], tag="VBD") or ())
