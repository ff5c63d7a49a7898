"""Prompt files of the chat model adapters, loaded once from the package.

Each prompt is a markdown file in this package. ``load_prompt("compact_turns")`` returns the text of
``compact_turns.md``; the text is read on first use and cached for the life of the process.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"[A-Za-z0-9_]+")
_SUFFIXES = (".md", ".txt")


@cache
def load_prompt(name: str) -> str:
    """The text of one prompt file of this package, read once.

    Args:
        name: The file name, with or without its ``.md`` / ``.txt`` suffix (``"extract_insights"``).

    Returns:
        The prompt text, without trailing whitespace.

    Raises:
        ValueError: ``name`` is not a plain file name (no folders, no dots other than the suffix).
        FileNotFoundError: No prompt file of that name exists.
    """
    stem = name
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            break
    if not _NAME.fullmatch(stem):
        raise ValueError(f"Not a prompt name: {name!r}")
    package = resources.files(__name__)
    candidates = [stem + suffix for suffix in _SUFFIXES] if stem == name else [name]
    for candidate in candidates:
        resource = package.joinpath(candidate)
        if resource.is_file():
            return resource.read_text(encoding="utf-8").rstrip()
    raise FileNotFoundError(f"No prompt named {name!r} in {__name__}")
