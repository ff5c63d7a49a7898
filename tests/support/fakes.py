"""Fakes for the model ports: deterministic, recording what they were asked."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

from memory_core.domain import Chunk, Turn
from memory_core.ports import InsightCandidate


class FakeChatModel:
    """Summaries that name what they covered; insights from a fixed table of ``{seq: [candidates]}``."""

    name = "fake-chat"

    def __init__(self, insights: dict[int, list[InsightCandidate]] | None = None) -> None:
        self.insights = insights or {}
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    async def summarize(self, turns: Sequence[Turn], previous_summary: str = "", max_words: int = 200) -> str:
        self.calls.append(("summarize", tuple(t.seq for t in turns)))
        part = f"turns {turns[0].seq}-{turns[-1].seq}" if turns else "nothing"
        return f"{previous_summary} | {part}".strip(" |")

    async def summarize_session(self, chunks: Sequence[Chunk], turns: Sequence[Turn], max_words: int = 200) -> str:
        self.calls.append(("summarize_session", tuple(t.seq for t in turns)))
        return f"session of {len(chunks)} chunks and {len(turns)} loose turns ({max_words} words max)"

    async def extract_insights(self, turns: Sequence[Turn]) -> list[InsightCandidate]:
        self.calls.append(("extract_insights", tuple(t.seq for t in turns)))
        return [c for t in turns for c in self.insights.get(t.seq, [])]

    async def close(self) -> None:
        pass


class HashingEmbedder:
    """Bag-of-words vectors from hashed words: texts sharing words are close. Good enough to test plumbing."""

    model = "hashing-embedder"

    def __init__(self, dimensions: int = 64) -> None:
        self.dimensions = dimensions
        self.calls = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        vectors = []
        for text in texts:
            vector = [0.0] * self.dimensions
            for word in re.findall(r"\w+", text.lower()):
                vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimensions] += 1.0
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            vectors.append([v / norm for v in vector])
        return vectors

    async def close(self) -> None:
        pass
