"""The local engine's insights: what the user says about themselves, restated in the third person in their own words.

A user message is split into sentences (``memory_core.text.sentences``, sentencex) and each sentence into clauses
("I love sci-fi but hate horror" is two). A clause is a statement about the user when it starts with the user as its
subject: "I ...", "We ...", "My wife and I ...", "My <noun> ..." or a past verb with the subject left out ("Lost my
job yesterday"). It is restated with that subject as "The user" and the verb agreeing with it ("I've been vegan for
five years" -> "The user has been vegan for five years."), the rest kept word for word with the pronouns turned
(my -> their, me -> them). Word forms come from lemminflect (``memory_core.text``).

What is left out, because the reflection benchmark (``bench/reflection_bench.py``) shows such clauses are rarely
facts about the user: questions; clauses that speak to or about the other person ("you", "your"); hypotheticals,
hedges and wishes ("if", "maybe", "I guess", "I wish"); clauses with fewer than two content words once the
small talk ("great", "awesome", "thanks", "excited") is set aside; and clauses whose object is only a pronoun
("I love it"). Each insight keeps the turns it was said in.

Keys, for consolidation: a few kinds of fact have a key of their own, so that a new statement replaces the old one
(name, home, diet, a named pet or relative, a preference for a thing); any other statement is keyed by its verb and
first content words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from memory_core.domain import Turn
from memory_core.ports import InsightCandidate
from memory_core.text import is_past, lemma, lemmas, plain, sentences, third_person, words

MAX_INSIGHT_CHARS = 200
"""Longest insight text; a longer restatement is cut at a word boundary."""

# Words that say nothing about the user on their own: small talk, feelings about the conversation.
_SMALL_TALK = frozenset(
    """
    great awesome cool amazing wonderful fantastic nice good glad happy excited excite thank thanks fun lovely
    sure hope wait see hear know think guess feel bet mean love like enjoy appreciate sorry hi hello hey wow
    yeah yes okay ok totally definitely absolutely super really pretty kinda lot much thing stuff something way
    tell talk chat let share keep touch catch later soon today tonight time day moment awesome incredible cute
    inspire inspiring inspired proud rock man true right agree exactly haha lol stoke stoked blast
    """.split()
)
_LIGHT_VERBS = frozenset("be have do get go make".split())
_YOU = re.compile(r"\b(?:[Yy]ou|[Yy]our|[Yy]ours|[Yy]ourself|[Yy]ourselves|YOU|YOUR|u|ur|ya)\b")
_HEDGE = re.compile(
    r"\b(?:if|unless|maybe|perhaps|probably|possibly|i\s+guess|i\s+suppose|i\s+wonder|i\s+wish|wish|not\s+sure"
    r"|kidding|joking|hypothetically|imagine|pretend|whether|would\s+be|could\s+be|might)\b",
    re.IGNORECASE,
)
_DISCOURSE = re.compile(
    r"^(?:(?:oh|ah|aw|well|so|and|but|also|plus|btw|actually|anyway|anyways|yeah|yes|yep|yup|ok|okay|alright|hey"
    r"|hi|hello|wow|woah|whoa|haha|lol|um|uh|hmm|honestly|guess\s+what|by\s+the\s+way|speaking\s+of\s+which"
    r"|sure|right|true|totally|definitely|absolutely|thanks|thank\s+you|cool|great|awesome|omg|gosh|man|dude"
    r"|funny\s+you\s+(?:should\s+)?(?:mention|ask)|as\s+I\s+(?:said|mentioned)|like\s+I\s+said|as\s+for\s+me|for\s+me|me\s+too|same\s+here|you\s+know"
    r"|good\s+question|no\s+way|of\s+course|in\s+fact|fun\s+fact|news|update)(?![\w'])[\s,!.:;\u2014-]*)+",
    re.IGNORECASE,
)
_VOCATIVE = re.compile(r"^[A-Z][a-z]+[,!]\s*")  # "Maria, I've been ..." (a name said to the other person)
_TIME_WORDS = frozenset(
    """
    yesterday today tonight tomorrow last next this past week weekend month year summer winter spring fall autumn
    morning afternoon evening night day days weeks months years ago recently lately earlier other few couple a the
    monday tuesday wednesday thursday friday saturday sunday january february march april may june july august
    september october november december back then now
    """.split()
)
_SUBJECT = re.compile(
    r"^(?:(?P<i>I|I'm|I've|I'd|I'll|Im|Ive)(?![\w'])"
    r"|(?P<we>we|we're|we've|we'd|we'll)(?![\w'])"
    r"|(?:my|our)\s+(?P<partner>[a-z]+(?:\s+[a-z]+)?)\s+and\s+(?P<and_i>I|I've|I'm|me)(?![\w'])"
    r"|(?P<my>my)\s+(?P<thing>[\w-]+(?:\s+[\w-]+){0,2}?)\s+(?=(?:is|are|was|were|has|have|had|\w+s)\s))",
    re.IGNORECASE,
)
_CONTRACTION_VERB = {"i'm": "am", "im": "am", "i've": "have", "ive": "have", "i'd": "'d", "i'll": "will"}
_WE_VERB = {"we're": "are", "we've": "have", "we'd": "'d", "we'll": "will"}
_SAME_FORM = frozenset(
    """
    was were had did will would can could should shall may might must can't cannot won't wouldn't couldn't
    shouldn't didn't used just also still really actually finally always usually never even definitely totally
    recently already currently now often sometimes mostly truly seriously kinda
    """.split()
)
_ADVERBS = frozenset(
    """
    just also still really actually finally always usually never even definitely totally recently already currently
    now often sometimes mostly truly seriously kinda honestly absolutely personally officially
    """.split()
)
_PRESENT = {"am": "is", "are": "is", "have": "has", "do": "does", "don't": "doesn't", "'d": "'d", "were": "was"}
_PRONOUNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, flags), replacement)
    for pattern, replacement, flags in (
        (r"\bI\s+am\b", "they are", re.IGNORECASE),
        (r"\bI'm\b", "they're", re.IGNORECASE),
        (r"\bI\s+was\b", "they were", re.IGNORECASE),
        (r"\bI've\b", "they've", re.IGNORECASE),
        (r"\bI'd\b", "they'd", re.IGNORECASE),
        (r"\bI'll\b", "they'll", re.IGNORECASE),
        (r"\bI\b", "they", 0),
        (r"\bmyself\b", "themselves", re.IGNORECASE),
        (r"\bourselves\b", "themselves", re.IGNORECASE),
        (r"\bmy\b", "their", re.IGNORECASE),
        (r"\bour\b", "their", re.IGNORECASE),
        (r"\bmine\b", "theirs", re.IGNORECASE),
        (r"\bours\b", "theirs", re.IGNORECASE),
        (r"\bme\b", "them", re.IGNORECASE),
        (r"\bus\b", "them", 0),  # lower case only: "US" is a country
        (r"\bwe're\b", "they're", re.IGNORECASE),
        (r"\bwe've\b", "they've", re.IGNORECASE),
        (r"\bwe\b", "they", re.IGNORECASE),
    )
)
# Coordinated clauses: "..., but hate horror", "... and got lost", "... so I ..."
_CLAUSE_BREAK = re.compile(r"\s*;\s+|\s+[\u2013\u2014-]+\s+")
_ELIDED_AND = re.compile(r",?\s+(?:and|but)\s+(?=(?:also\s+|really\s+|totally\s+)?(?P<verb>[a-z]+)\b)", re.IGNORECASE)
_INTENT_VERBS = frozenset("plan want hope aim intend decide".split())
_PREFERENCE_VERBS = frozenset("like love enjoy prefer hate dislike adore detest loathe despise".split())
_NAME_TITLES = frozenset("dr dr. mr mr. mrs mrs. ms ms. prof prof. st st. sir madam".split())
_DIETS = frozenset("vegan vegetarian pescatarian pescetarian".split())
_PETS = frozenset(
    "dog dogs puppy puppies cat cats kitten kittens parrot bird hamster rabbit bunny fish turtle horse snake".split()
)
_RELATIVES = frozenset(
    "son daughter brother sister wife husband partner boyfriend girlfriend fiance fiancee mom dad mother father"
    " grandma grandpa grandmother grandfather aunt uncle cousin niece nephew baby".split()
)
_NAMED = re.compile(
    r"\b(?P<noun>[a-z]+)\s+(?:named|called)\s+(?P<name>[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)?)", re.IGNORECASE
)
_NAME_STATEMENT = re.compile(
    r"^(?:my\s+(?:full\s+|first\s+|real\s+)?name(?:'s|\s+is)|(?:you\s+can\s+|just\s+|please\s+)?call\s+me"
    r"|I'm\s+called|I\s+am\s+called)\s+(?P<name>[\w'-]+(?:\s+[\w'-]+){0,2})\s*[.!]*$",
    re.IGNORECASE,
)
_IM_NAME = re.compile(r"^(?:I'm|I\s+am)\s+(?P<name>[A-Z][a-z'-]+(?:\s+[A-Z][a-z'-]+)?)\s*(?:[.!,]|$)")


@dataclass(frozen=True)
class Fact:
    """One insight of a message: what it is about (``key``), its kind and its text."""

    key: str
    category: str
    text: str


@dataclass(frozen=True)
class _Statement:
    subject: str  # "The user", "The user and their wife", "The user's dog"
    verb: str  # the verb as restated ("has", "loves", "lost"), "" when the subject is a possessive one
    rest: str  # what follows the verb, in the user's words
    verb_lemma: str
    plural: bool = False


def extract(turns: Sequence[Turn]) -> list[InsightCandidate]:
    """Facts the user stated about themselves, one candidate per (key, text) with every turn it was said in."""
    found: dict[tuple[str, str], tuple[Fact, list[int]]] = {}
    for turn in turns:
        for fact in facts_in_message(turn.user_message):
            entry = found.setdefault((fact.key, fact.text), (fact, []))
            if turn.seq not in entry[1]:
                entry[1].append(turn.seq)
    return [
        InsightCandidate(key=fact.key[:200], category=fact.category, text=fact.text, source_turns=sorted(seqs))
        for fact, seqs in found.values()
    ]


def facts_in_message(message: str) -> list[Fact]:
    """The facts of every sentence of a user message, in order."""
    facts: list[Fact] = []
    for index, sentence in enumerate(sentences(plain(message))):
        facts.extend(facts_in_sentence(sentence.strip(), opening=index == 0))
    return facts


def facts_in_sentence(sentence: str, *, opening: bool = True) -> list[Fact]:
    """The facts one sentence states about the user (none for a question).

    ``opening``: the sentence opens its message (where people put what they came to say; it weighs in the score).
    """
    if not sentence or "?" in sentence:
        return []
    name = _name(sentence)
    if name:
        return [name]
    facts = []
    for clause in clauses(sentence):
        fact = _fact(clause, opening)
        if fact is not None:
            facts.append(fact)
    return facts


def clauses(sentence: str) -> list[str]:
    """The clauses of a sentence where the user may speak of themselves, each starting with its subject."""
    out: list[str] = []
    for piece in _CLAUSE_BREAK.split(sentence):
        piece = _strip_lead(piece.strip(" ,.!"))
        if not piece:
            continue
        parts = _split_elided(piece)
        out.extend(parts)
    return out


def _split_elided(clause: str) -> list[str]:
    """A coordinated verb shares the subject: "I love sci-fi but hate horror" -> "I love sci-fi", "I hate horror"."""
    subject = _SUBJECT.match(clause)
    if subject is None or not (subject.group("i") or subject.group("we")):
        return [clause]
    for match in _ELIDED_AND.finditer(clause):
        verb = match.group("verb").lower()
        if verb in _PREFERENCE_VERBS or is_past(verb):
            head = subject.group(0).split("'")[0]  # "I'm" -> "I": the second verb carries its own tense
            return [clause[: match.start()], *_split_elided(f"{head} {clause[match.end() :]}")]
    return [clause]


def _strip_lead(text: str) -> str:
    """Without leading discourse markers, a vocative ("Maria, ...") and a leading time phrase (moved to the end)."""
    previous = None
    while previous != text:
        previous = text
        text = _DISCOURSE.sub("", text)
        if _VOCATIVE.match(text) and not text.startswith(("I,", "I!")):
            text = _VOCATIVE.sub("", text, count=1)
    head, sep, tail = text.partition(", ")
    if sep and len(head.split()) <= 4 and all(w.lower() in _TIME_WORDS or w.isdigit() for w in head.split()):
        return f"{tail.rstrip(' .!')} {head.lower()}"
    lead = re.match(r"^((?:\w+\s+){1,3}?)(?=I\s)", text)
    if lead and all(w.lower() in _TIME_WORDS for w in lead.group(1).split()):
        return f"{text[lead.end() :].rstrip(' .!')} {lead.group(1).strip().lower()}"
    return text


def _name(sentence: str) -> Fact | None:
    """The user's name, each word capitalised, from "My name is Ana Silva", "Call me Sam", "I'm Ana." and the like."""
    text = _strip_lead(sentence.strip())
    match = _NAME_STATEMENT.match(text) or _IM_NAME.match(text)
    if match is None:
        return None
    tokens = match.group("name").split()
    if not tokens or any(t.lower().rstrip(".") in _NAME_TITLES or t.lower().endswith("'s") for t in tokens):
        return None
    if any(lemma(t.lower()) != t.lower() or t.lower() in _SMALL_TALK for t in tokens):
        return None  # "I'm Going", "I'm Excited": words, not a name
    name = " ".join(t[:1].upper() + t[1:] for t in tokens)
    return Fact("name", "identity", f"The user's name is {name}.")


def _parse(clause: str) -> _Statement | None:
    """The clause's subject and verb, if the subject is the user."""
    match = _SUBJECT.match(clause)
    if match is None:
        return _elided(clause)
    rest = clause[match.end() :].strip()
    if match.group("partner"):
        partner = _turn_pronouns(f"my {match.group('partner')}")
        verb_text, tail = _first_word(rest)
        return _verb_statement(f"The user and {partner}", verb_text, tail, plural=True)
    if match.group("my"):
        thing = _turn_pronouns(match.group("thing"))
        return _Statement(f"The user's {thing}", "", rest, "be")
    pronoun = (match.group("i") or match.group("we") or "").lower()
    contracted = _CONTRACTION_VERB.get(pronoun) or _WE_VERB.get(pronoun)
    if contracted:
        return _verb_statement("The user", contracted, rest)
    verb_text, tail = _first_word(rest)
    return _verb_statement("The user", verb_text, tail)


def _elided(clause: str) -> _Statement | None:
    """A past verb with the subject left out: "Lost my job as a banker yesterday", "Just got back from a trip"."""
    tokens = clause.split()
    adverbs = []
    while tokens and tokens[0].lower() in _ADVERBS:
        adverbs.append(tokens.pop(0).lower())
    if not tokens or not re.search(r"\b(?:my|me|myself)\b", clause, re.IGNORECASE):
        return None
    verb = tokens[0].lower()
    if not is_past(verb) or verb in {"was", "were", "had", "did"}:
        return None
    return _Statement("The user", " ".join([*adverbs, verb]), " ".join(tokens[1:]), lemma(verb))


def _first_word(text: str) -> tuple[str, str]:
    head, _, tail = text.partition(" ")
    return head, tail


def _verb_statement(subject: str, verb: str, rest: str, *, plural: bool = False) -> _Statement | None:
    """The subject with its verb made to agree ("I have" -> "The user has"); adverbs before the verb are kept."""
    adverbs = []
    while verb.lower() in _ADVERBS:
        adverbs.append(verb.lower())
        verb, rest = _first_word(rest)
    low = verb.lower()
    if low == "'d":  # I'd: had before a past participle, would otherwise
        nxt, _ = _first_word(rest)
        low = "had" if nxt.lower() == "been" or (is_past(nxt.lower()) and nxt.lower() != "like") else "would"
    if not low or not re.fullmatch(r"[a-z']+", low):
        return None
    base = lemma(low)
    if plural:
        said = {"am": "are", "'d": "would"}.get(low, low)
    elif low in _PRESENT:
        said = _PRESENT[low]
    elif low in _SAME_FORM or is_past(low):
        said = low
    elif base == low and third_person(low):
        said = third_person(low) or low
    else:
        return None
    return _Statement(subject, " ".join([*adverbs, said]), rest, base, plural)


def _turn_pronouns(text: str) -> str:
    for pattern, replacement in _PRONOUNS:
        text = pattern.sub(replacement, text)
    return text


def _fact(clause: str, opening: bool = True) -> Fact | None:
    """The clause restated as a fact about the user, or None when it is not one worth keeping.

    A fact of a kind with a key of its own (``_key``: home, work, diet, a named pet...) is kept; a preference or any
    other statement only when it says enough (two content words besides small talk) and is specific enough
    (``specificity``): the rules the reflection benchmark keeps at a precision of 0.8.
    """
    if _YOU.search(clause) or _HEDGE.search(clause):
        return None
    statement = _parse(clause)
    if statement is None:
        return None
    rest = statement.rest.replace('"', "").strip(" ,.!;:\u2026~*")
    if not rest or _pointing(rest):
        return None
    key, category = _key(statement, rest)
    if category in {"statement", "preference"} and not _says_enough(statement, rest, category, opening):
        return None
    text = _cut(" ".join(p for p in (statement.subject, statement.verb, _turn_pronouns(rest)) if p))
    return Fact(key, category, text)


def _says_enough(statement: _Statement, rest: str, category: str, opening: bool) -> bool:
    content = {t for t in lemmas(rest) if t not in _SMALL_TALK}
    if statement.verb_lemma not in _LIGHT_VERBS and statement.verb_lemma not in _SMALL_TALK:
        content.add(statement.verb_lemma)
    if category == "preference":  # the verb says what it is: "I love coffee"
        if not content - {statement.verb_lemma} or re.search(r"\b(?:too|as\s+well)$", rest, re.IGNORECASE):
            return False  # "I love traveling too": agreeing with the other person's taste
        # "I love the color", "I like how it looks": something shown in the conversation, not a taste
        first = (words(rest)[:1] or [""])[0].lower()
        return first not in _DETERMINED and not re.search(r"\b(?:that|those|it)\b", rest, re.IGNORECASE)
    if len(content) < 2:
        return False
    return specificity(statement, rest, opening) >= SPECIFIC


SPECIFIC = 7.0
"""The least ``specificity`` of a statement kept as an insight (no key of its own)."""
_DETERMINED = frozenset("the that this these those how what it they them when i we he she".split())
_MODAL = frozenset("will would can could should shall might must may won't can't couldn't wouldn't shouldn't".split())
_WHEN = re.compile(
    r"\b(?:yesterday|last\s+\w+|\w+\s+ago|the\s+other\s+day|this\s+(?:morning|week|weekend|month|year)|recently"
    r"|(?:next|this)\s+(?:week|weekend|month|year|summer|spring|fall|winter)|tomorrow|tonight|in\s+\d{4})\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\b(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|twenty|hundred)\b", re.IGNORECASE)
_POINTER = re.compile(r"\b(?:it|this|that|these|those|them|him|her|he|she|they|there|here)\b", re.IGNORECASE)


def specificity(statement: _Statement, rest: str, opening: bool) -> float:
    """How specific a statement is: many content words, a time, a name, a number, a past event.

    The weights come from the reflection benchmark (what LoCoMo's annotators recorded as facts about a speaker):
    a statement with a time ("last week"), a name or place, or a number, told in the past and in the opening
    sentence, is nearly always one; one in the future or conditional ("I will", "I can") rarely is.
    """
    verb = statement.verb.split()[-1] if statement.verb else ""
    score = float(min(len(set(lemmas(rest))), 6))
    score += 2.0 * bool(_WHEN.search(rest))
    score += 1.5 * bool(re.search(r"(?<=\s)[A-Z][a-z]+", f" {rest}"))
    score += 1.0 * bool(_NUMBER.search(rest))
    score += 1.0 * is_past(verb) - 3.0 * (verb in _MODAL) + 1.0 * opening
    score -= 0.5 * bool(_POINTER.search(rest))
    score -= 0.5 * (bool(verb) and not is_past(verb) and verb not in _MODAL and verb not in {"is", "are", "has"})
    return score


def _pointing(rest: str) -> bool:
    """Whether the object is only a pronoun pointing at the conversation ("love it", "did that")."""
    found = [w.lower() for w in words(rest)]
    return bool(found) and found[0] in {"it", "that", "this", "those", "these", "them", "so"} and len(found) <= 3


def _cut(text: str) -> str:
    """``text`` as a sentence within ``MAX_INSIGHT_CHARS``, cut at a word boundary if needed."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) >= MAX_INSIGHT_CHARS:
        text = text[: MAX_INSIGHT_CHARS - 1].rsplit(" ", 1)[0].rstrip(" ,;:-")
    return f"{text}."


def _slug(text: str, limit: int = 4) -> str:
    return "-".join(lemmas(text)[:limit])


def _main_verb(statement: _Statement, rest: str) -> tuple[str, str]:
    """The verb that says what happens, and what follows it.

    "is relocating to Denver" -> relocate, "to Denver"; "used to live in Berlin" -> live, "in Berlin".
    """
    verb, tail = statement.verb_lemma, rest
    head, _, after = rest.partition(" ")
    low = head.lower()
    if verb == "use" and low == "to":
        head, _, after = after.partition(" ")
        return lemma(head.lower()), after
    if verb in {"be", "have"} and (low.endswith("ing") or low == "been") and "VERB" in _lemma_kinds(low):
        return lemma(low), after
    return verb, tail


def _lemma_kinds(word: str) -> str:
    return "VERB" if lemma(word) != word or word.endswith("ing") else ""


def _key(statement: _Statement, rest: str) -> tuple[str, str]:
    """What the fact is about: a key of its own for facts a later statement replaces, else verb and content."""
    verb, tail = _main_verb(statement, rest)
    low = tail.lower()
    first = low.split()[:1]
    named = _NAMED.search(rest)
    if statement.subject.startswith("The user's "):
        return f"about:{_slug(statement.subject[len('The user') :] + ' ' + rest)}", "statement"
    if named and named.group("noun").lower() in _PETS | _RELATIVES:
        kind = "pet" if named.group("noun").lower() in _PETS else "family"
        return f"{kind}:{lemma(named.group('noun').lower())}:{named.group('name').lower()}", kind
    if verb in {"be", "have"} and any(w.strip(".,!") in _DIETS for w in rest.lower().split()[:3]):
        return "diet", "health"
    if verb == "be" and first == ["allergic"]:
        return f"allergy:{_slug(tail[len('allergic') :], 3)}", "health"
    if verb in _PREFERENCE_VERBS and statement.subject == "The user":
        return f"preference:{_slug(tail, 3)}", "preference"
    if verb == "live" and first in (["in"], ["near"]):
        if statement.verb_lemma == "use":
            return f"former-location:{_slug(tail, 3)}", "location"
        return "location", "location"
    if verb in {"move", "relocate"} and first == ["to"]:
        past = statement.verb_lemma not in {"be", "will"} and is_past(statement.verb.split()[-1])
        return ("location", "location") if past else (f"plan:move:{_slug(tail, 3)}", "plan")
    if verb in _INTENT_VERBS and first == ["to"] and (_WHEN.search(tail) or _NUMBER.search(tail)):
        kind = "plan" if verb in {"plan", "intend", "decide"} else "goal"  # with a time or a number: "at 60"
        return f"{kind}:{_slug(tail[3:], 3)}", kind
    if verb == "work" and first and first[0] in {"as", "at", "for"}:
        return ("occupation" if first[0] == "as" else "employer"), "work"
    return f"{verb}:{_slug(rest)}", "statement"
