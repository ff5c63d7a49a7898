"""A local ``ChatModel``: extractive summaries and insights restated from the user's words, deterministic and offline.

What it does:

* ``summarize`` and ``summarize_session`` pick whole sentences from the conversation (and from the previous
  summary or the chunk summaries), scored by TF-IDF of their lemmas (``memory_core.text``) with a bonus for the
  user's own statements of fact, drop greetings, thanks and small talk, and keep the picked sentences in their
  original order, each line labelled ``User:`` or ``Assistant:``. An assistant sentence comes only with the user's
  side of its turn (the question it answers, or what the user said), so a reply never follows a line it does not
  answer; no sentence is cut. Every word of a summary comes from its input.
* ``extract_insights`` reads the user's messages only and restates what the user says about themselves in the third
  person, in their own words, with the turns it was said in (``memory_core.adapters.local_chat_insights``).

What it does not do: understand language. It does not paraphrase, resolve pronouns, read facts from the agent's
messages or infer anything not said; it prefers missing a fact to writing a wrong one, and handles English only.
Its summaries are excerpts, not abstracts. Configure an LLM provider where that matters (any OpenAI-compatible
server, a local one included: see the README).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from memory_core.adapters.local_chat_insights import MAX_INSIGHT_CHARS, extract, facts_in_sentence
from memory_core.domain import Chunk, Turn
from memory_core.ports import InsightCandidate
from memory_core.text import STOP_WORDS, lemmas, line_sentences, plain, words

__all__ = ["MAX_INSIGHT_CHARS", "LocalChatModel", "extract_insights"]

logger = logging.getLogger(__name__)

_LABEL = re.compile(r"^(User|Assistant|Agent)\s*:\s*", re.IGNORECASE)
# Words that say nothing on their own in a summary sentence.
_FILLER = frozenset(
    """
    hi hello hey hiya greetings thanks thank thx ty cheers bye goodbye cool great nice awesome perfect welcome
    morning evening afternoon night good glad happy help helpful appreciate appreciated please sorry wow alright
    right see soon later care take day meet pleasure chat talk hear fine amazing wonderful excellent fantastic
    interesting true agreed exactly absolutely definitely course problem worries np ha hehe wonder question
    sound sounds wonderful lovely fun exciting brilliant super neat glad sweet cute gorgeous beautiful incredible
    agree love like enjoy totally yeah yes ok okay oh ah really so
    """.split()
)


def _split_sentences(text: str) -> list[str]:
    """Sentences of a text (sentencex), whitespace collapsed."""
    out = (re.sub(r"\s+", " ", s).strip() for s in line_sentences(plain(text)))
    return [s for s in out if s]


def _word_count(text: str) -> int:
    return len(text.split())


def _content_terms(text: str) -> list[str]:
    return lemmas(text)


# Extractive summaries
# --------------------------------------------------------------------------------------------------------------

_OPENER = re.compile(
    r"(?:hi|hello|hey|hiya|thanks|thank\s+you|thank|thx|ty|cheers|bye|goodbye|good\s*bye|see\s+you|you're\s+welcome"
    r"|welcome|have\s+a|enjoy\s+your|good\s+(?:morning|afternoon|evening|night|luck)|great|cool|awesome|perfect|ok"
    r"|okay|sure|glad|happy\s+to\s+help|no\s+problem|my\s+pleasure|nice\s+to\s+meet|sounds\s+good)(?![\w'])",
    re.IGNORECASE,
)
_INTERJECTION = re.compile(
    r"(?:wow|woah|whoa|oh|ah|aw+|yay|haha|lol|omg|yeah|yes|yep|totally|absolutely|definitely|exactly|indeed|true"
    r"|right|agreed|agree|so|hey|hi|hello|thanks|thank\s+you)(?![\w'])",
    re.IGNORECASE,
)
_USER_WEIGHT = 1.0
_AGENT_WEIGHT = 0.5
_OPENING_BONUS = 1.2  # the user's first statement usually sets the topic
_FACT_BONUS = 1.6
_REDUNDANT_OVERLAP = 0.7


@dataclass
class _Sentence:
    text: str
    role: str | None  # "User", "Assistant" or None (prose from elsewhere)
    source: str  # lines are rendered per source (a turn, a chunk, the previous summary)
    group: str  # summarize_session keeps at least one sentence of each group when it can
    order: int
    weight: float
    terms: list[str] = field(default_factory=list)
    anchor: int | None = None  # index of the sentence it must come with (an answer's question or user side)

    @property
    def words(self) -> int:
        return _word_count(self.text)


def _is_filler(sentence: str) -> bool:
    """Greetings, thanks, goodbyes and acknowledgements, unless they also state a fact ("Hi, I'm Ana")."""
    content = [w for w in words(sentence) if w.lower() not in STOP_WORDS and w.lower() not in _FILLER]
    if not content:
        return True
    if _OPENER.match(sentence) and len(content) <= 2:
        return not facts_in_sentence(sentence)
    if _INTERJECTION.match(sentence) and all(w[:1].isupper() for w in content):  # "Wow, Caroline!"
        return not facts_in_sentence(sentence)
    return False


def _is_question(sentence: str) -> bool:
    return sentence.rstrip().endswith("?")


def _usable(sentence: str) -> bool:
    return bool(sentence) and not _is_question(sentence) and not _is_filler(sentence)


def _turn_sentences(turns: Sequence[Turn], start: int, group: str) -> list[_Sentence]:
    """The usable sentences of the turns, each of the agent's anchored to the user's side of its turn.

    The anchor is the user's question when they asked one (kept with its answer), else their first statement.
    """
    out: list[_Sentence] = []
    order = start
    for turn in turns:
        user_side: list[int] = []
        question: int | None = None
        for text in _split_sentences(turn.user_message):
            order += 1
            if _is_question(text) and not _is_filler(text):
                question = len(out)
                out.append(_Sentence(text, "User", f"turn:{turn.seq}:User", group, order, 0.0))
            elif _usable(text):
                bonus = _FACT_BONUS if facts_in_sentence(text) else 1.0
                if not any(s.role == "User" and s.weight > 0 for s in out):
                    bonus *= _OPENING_BONUS
                user_side.append(len(out))
                out.append(_Sentence(text, "User", f"turn:{turn.seq}:User", group, order, _USER_WEIGHT * bonus))
        anchor = question if question is not None else (user_side[0] if user_side else None)
        for text in _split_sentences(turn.agent_message):
            order += 1
            if anchor is not None and _usable(text):
                out.append(
                    _Sentence(text, "Assistant", f"turn:{turn.seq}:Assistant", group, order, _AGENT_WEIGHT, [], anchor)
                )
    return out


def _summary_sentences(summary: str, start: int, source: str) -> list[_Sentence]:
    """Sentences of an earlier summary; ``User:``/``Assistant:`` line labels are kept as roles."""
    out: list[_Sentence] = []
    order = start
    anchor: int | None = None  # the first sentence of the last User line: an Assistant line below comes with it
    for line_no, raw_line in enumerate(plain(summary).splitlines()):
        line = raw_line.strip()
        label = _LABEL.match(line)
        role: str | None = None
        if label:
            role = "User" if label.group(1).lower() == "user" else "Assistant"
            line = line[label.end() :]
        first_of_line = True
        for text in _split_sentences(line):
            order += 1
            question = role == "User" and _is_question(text) and not _is_filler(text)
            if not (_usable(text) or question):
                continue
            weight = _AGENT_WEIGHT if role == "Assistant" else 0.0 if question else _USER_WEIGHT
            if role != "Assistant" and weight and facts_in_sentence(text):
                weight *= _FACT_BONUS
            if role == "User" and first_of_line:
                anchor = len(out)
            first_of_line = False
            tied = anchor if role == "Assistant" else None
            out.append(_Sentence(text, role, f"{source}:{line_no}", source, order, weight, [], tied))
        if role != "User":
            anchor = None if role is None else anchor
    return out


def _score(sentences: Sequence[_Sentence]) -> list[float]:
    """TF-IDF of each sentence's content words over the batch, damped by length and weighted by speaker and facts."""
    for sentence in sentences:
        sentence.terms = _content_terms(sentence.text)
    frequency: Counter[str] = Counter()
    document_frequency: Counter[str] = Counter()
    for sentence in sentences:
        frequency.update(sentence.terms)
        document_frequency.update(set(sentence.terms))
    count = len(sentences)
    scores = []
    for sentence in sentences:
        unique = sorted(set(sentence.terms))
        if not unique:
            scores.append(0.0)
            continue
        raw = sum(
            (1.0 + math.log(frequency[t])) * math.log(1.0 + (count + 1) / (document_frequency[t] + 0.5)) for t in unique
        )
        length_penalty = max(len(unique), 3) ** 0.7
        entities = [
            w for w in words(sentence.text)[1:] if (w[:1].isupper() or w.isdigit()) and w.lower() not in STOP_WORDS
        ]
        entity_bonus = 1.0 + 0.1 * min(3, len(entities))
        scores.append(sentence.weight * entity_bonus * raw / length_penalty)
    return scores


def _select(
    sentences: Sequence[_Sentence], scores: Sequence[float], budget: int, *, cover_groups: bool
) -> list[_Sentence]:
    """Best sentences within ``budget`` words (one per group first when asked), returned in original order."""
    ranked = sorted(range(len(sentences)), key=lambda i: (-scores[i], sentences[i].order))
    chosen: list[int] = []
    used = 0

    def cost(index: int) -> int:
        return sentences[index].words + (1 if sentences[index].role else 0)

    def redundant(index: int) -> bool:
        terms = set(sentences[index].terms)
        for other in chosen:
            other_terms = set(sentences[other].terms)
            union = terms | other_terms
            if union and len(terms & other_terms) / len(union) >= _REDUNDANT_OVERLAP:
                return True
        return False

    def with_anchor(index: int) -> list[int]:
        anchor = sentences[index].anchor
        return [index] if anchor is None or anchor in chosen else [anchor, index]

    passes: list[list[int]] = []
    if cover_groups:
        firsts: dict[str, int] = {}
        for index in ranked:
            firsts.setdefault(sentences[index].group, index)
        passes.append(sorted(firsts.values(), key=lambda i: (-scores[i], sentences[i].order)))
    passes.append(ranked)
    for candidates in passes:
        for index in candidates:
            if index in chosen or scores[index] <= 0 or redundant(index):
                continue
            unit = with_anchor(index)  # an answer comes with its question, a reply with the user's side
            if used + sum(cost(i) for i in unit) <= budget:
                chosen.extend(unit)
                used += sum(cost(i) for i in unit)
    return [sentences[i] for i in sorted(chosen, key=lambda i: sentences[i].order)]


def _render(sentences: Sequence[_Sentence]) -> str:
    lines: list[str] = []
    current_source: str | None = None
    for sentence in sentences:
        if lines and sentence.source == current_source:
            lines[-1] = f"{lines[-1]} {sentence.text}"
            continue
        current_source = sentence.source
        lines.append(f"{sentence.role}: {sentence.text}" if sentence.role else sentence.text)
    return "\n".join(lines)


def _cap_words(text: str, max_words: int) -> str:
    """The lines of ``text`` that fit in ``max_words`` words, whole.

    A line that does not fit ends the text: a line holds whole sentences, so no sentence is ever cut.
    """
    kept: list[str] = []
    remaining = max_words
    for line in text.splitlines():
        found = line.split()
        if not found:
            continue
        if len(found) > remaining:
            break
        kept.append(" ".join(found))
        remaining -= len(found)
    return "\n".join(kept)


def _best_truncated(sentences: Sequence[_Sentence], scores: Sequence[float], budget: int) -> str:
    """When no sentence fits the budget whole: nothing (a sentence is never cut)."""
    return ""


def _summarize_turns(turns: Sequence[Turn], previous_summary: str, max_words: int) -> str:
    if max_words <= 0:
        return ""
    previous = previous_summary.strip()
    previous_words = _word_count(previous)
    new = _turn_sentences(turns, 0, "turns")
    new_scores = _score(new)
    new_budget = min(max_words, max(max_words - previous_words, max_words // 2))
    chosen = _select(new, new_scores, new_budget, cover_groups=False)
    new_text = _render(chosen) if chosen else _best_truncated(new, new_scores, new_budget)
    room = max_words - _word_count(new_text)
    if previous_words <= room:
        kept = previous
    else:
        old = _summary_sentences(previous, 0, "previous")
        old_scores = _score(old)
        picked = _select(old, old_scores, room, cover_groups=False)
        kept = _render(picked) if picked else _best_truncated(old, old_scores, room)
    return _cap_words("\n".join(part for part in (kept, new_text) if part), max_words)


def _summarize_session(chunks: Sequence[Chunk], turns: Sequence[Turn], max_words: int) -> str:
    if max_words <= 0:
        return ""
    sentences: list[_Sentence] = []
    order = 0
    for chunk in sorted(chunks, key=lambda c: c.index):
        part = _summary_sentences(chunk.summary, order, f"chunk:{chunk.index}")
        sentences.extend(part)
        order += 10_000
    sentences.extend(_turn_sentences(sorted(turns, key=lambda t: t.seq), order, "turns"))
    scores = _score(sentences)
    chosen = _select(sentences, scores, max_words, cover_groups=True)
    text = _render(chosen) if chosen else _best_truncated(sentences, scores, max_words)
    return _cap_words(text, max_words)


# --------------------------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------------------------


class LocalChatModel:
    """A ``ChatModel`` that needs no network: extractive summaries and pattern-matched insights (see the module).

    Each call runs in a thread, as a remote model's call waits on the network: the work is pure Python (sentences,
    lemmas, scores; the first call also loads the lemma dictionary), and on the event loop it would hold up every
    other function of the process meanwhile (the local host's durable worker answers the Durable client there).

    Attributes:
        name: The model's name as recorded with what it produced.
    """

    def __init__(self, name: str = "local-extractive") -> None:
        self.name = name

    async def summarize(self, turns: Sequence[Turn], previous_summary: str = "", max_words: int = 200) -> str:
        """The previous summary (trimmed to make room if needed) followed by the most informative new sentences.

        Args:
            turns: The turns to fold in.
            previous_summary: The cumulative summary so far.
            max_words: Upper bound on the words of the result.

        Returns:
            Plain text, one line per speaker turn, at most ``max_words`` words.
        """
        started = time.perf_counter()
        text = await asyncio.to_thread(_summarize_turns, turns, previous_summary, max_words)
        _log_call("summarize", started, len(turns), f"{_word_count(text)} words")
        return text

    async def summarize_session(self, chunks: Sequence[Chunk], turns: Sequence[Turn], max_words: int = 200) -> str:
        """The most informative sentences of the chunk summaries and the remaining turns, in order.

        Args:
            chunks: The session's chunks (their summaries are the input, not their turns).
            turns: The turns not yet in a chunk.
            max_words: Upper bound on the words of the result.

        Returns:
            Plain text of at most ``max_words`` words; each chunk contributes a sentence when the budget allows.
        """
        started = time.perf_counter()
        text = await asyncio.to_thread(_summarize_session, chunks, turns, max_words)
        _log_call("summarize_session", started, len(turns), f"{len(chunks)} chunks in, {_word_count(text)} words")
        return text

    async def extract_insights(self, turns: Sequence[Turn]) -> list[InsightCandidate]:
        """Facts the user stated about themselves, restated in the third person.

        Args:
            turns: The turns to read; only their user messages are used.

        Returns:
            One candidate per distinct (key, text), with every turn it was stated in, in order of first mention.
        """
        started = time.perf_counter()
        found = await asyncio.to_thread(extract_insights, turns)
        _log_call("extract_insights", started, len(turns), f"{len(found)} insights")
        return found

    async def close(self) -> None:
        """Nothing to release."""


def _log_call(operation: str, started: float, turns: int, result: str) -> None:
    """One INFO line per call, as a remote model's adapter logs its requests (the reflection bench counts them)."""
    elapsed = (time.perf_counter() - started) * 1000
    logger.info("local chat: %s of %d turns: %s in %.0f ms", operation, turns, result, elapsed)


def extract_insights(turns: Sequence[Turn]) -> list[InsightCandidate]:
    """The synchronous core of :meth:`LocalChatModel.extract_insights`.

    Args:
        turns: The turns to read; only their user messages are used.

    Returns:
        One candidate per distinct (key, text), with every turn it was stated in, in order of first mention.
    """
    return extract(turns)
