"""A local ``ChatModel``: extractive summaries and pattern-based insight extraction, deterministic and offline.

What it does:

* ``summarize`` and ``summarize_session`` pick whole sentences from the conversation (and from the previous
  summary or the chunk summaries), scored by TF-IDF of their content words with a bonus for the user's own
  statements of fact, drop greetings, thanks and questions, and keep the picked sentences in their original order,
  each line labelled ``User:`` or ``Assistant:``. Every word of a summary comes from its input.
* ``extract_insights`` matches a fixed set of English first-person patterns in the user's messages (name, age,
  nationality, work, home, origin, preferences, diet, allergies, goals, plans, family and pets) and restates each
  match in the third person, e.g. "I live in Lisbon" becomes "The user lives in Lisbon.". Questions, negated,
  hedged, conditional or hypothetical sentences, and statements about anybody else are skipped.

What it does not do: understand language. It does not paraphrase, resolve pronouns ("I love it"), read facts
from the agent's messages, infer anything not said in one of its patterns, follow negations such as "I don't
like coffee" (skipped, not recorded as a dislike) or handle languages other than English. Its summaries are
excerpts, not abstracts. Configure an LLM provider where that matters.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from memory_core.domain import Chunk, Turn
from memory_core.ports import InsightCandidate

MAX_INSIGHT_CHARS = 200
"""Longest insight text; longer restatements are cut at a word boundary."""
_MAX_OBJECT_CHARS = 2 * MAX_INSIGHT_CHARS

# --------------------------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------------------------

_TYPOGRAPHIC = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})
_SENTENCE_BREAK = re.compile(r"(?:(?<=[.!?\u2026])|(?<=[.!?\u2026][\"')\]]))\s+")
_ABBREVIATIONS = frozenset(
    {"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "jr.", "sr.", "vs.", "etc.", "e.g.", "i.e.", "approx.", "no."}
)
_WORD = re.compile(r"[A-Za-z0-9\u00c0-\u024f]+(?:['-][A-Za-z0-9\u00c0-\u024f]+)*")
_LABEL = re.compile(r"^(User|Assistant|Agent)\s*:\s*", re.IGNORECASE)


def _split_sentences(text: str) -> list[str]:
    """Sentences of a text: split at line breaks and at . ! ? followed by a space (not after an abbreviation)."""
    sentences: list[str] = []
    for line in text.translate(_TYPOGRAPHIC).splitlines():
        line = re.sub(r"\s+", " ", line).strip()
        if not line:
            continue
        pending = ""
        for piece in _SENTENCE_BREAK.split(line):
            pending = f"{pending} {piece}" if pending else piece
            last = pending.rsplit(" ", 1)[-1].lower()
            if last in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last):
                continue
            sentences.append(pending)
            pending = ""
        if pending:
            sentences.append(pending)
    return sentences


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _word_count(text: str) -> int:
    return len(text.split())


def _singular(word: str) -> str:
    if len(word) <= 3 or word in _NOT_PLURAL:
        return word
    if word.endswith("ies") and word not in _IES_KEEP:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if word.endswith("ies"):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


_NOT_PLURAL = frozenset(
    {"news", "series", "species", "physics", "maths", "mathematics", "economics", "politics", "chess", "glasses"}
    | {"yes", "this", "was", "has", "does", "is", "his", "its", "bus", "gas", "paris", "texas", "athens", "brussels"}
)
_IES_KEEP = frozenset({"movies", "cookies", "smoothies", "brownies", "zombies", "selfies", "pies", "ties", "lies"})

# Function words: never content, never part of a key.
_STOPWORDS = frozenset(
    """
    a an the and or but if then so of to in on at for with from by about as into like through after over between
    out against during without before under around among than too very just also only own same such
    i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself she her
    hers herself it its itself they them their theirs themselves one
    what which who whom whose this that these those there here when where why how all any both each few more
    most other some no nor not don't doesn't didn't isn't aren't wasn't weren't won't wouldn't can't cannot
    couldn't shouldn't i'm i've i'd i'll you're you've you'd you'll it's that's there's let's
    am is are was were be been being have has had having do does did doing will would shall should can could may
    might must get gets got go goes going gonna want wanna
    ok okay yes yeah yep no nope sure really well oh ah um uh hmm lol haha now still even much many lot lots bit
    kind sort way thing things something anything everything nothing stuff
    """.split()
)
# Words that say nothing on their own in a summary sentence.
_FILLER = frozenset(
    """
    hi hello hey hiya greetings thanks thank thx ty cheers bye goodbye cool great nice awesome perfect welcome
    morning evening afternoon night good glad happy help helpful appreciate appreciated please sorry wow alright
    right see soon later care take day meet pleasure chat talk hear fine amazing wonderful excellent fantastic
    interesting true agreed exactly absolutely definitely course problem worries np ha hehe wonder question
    sound sounds wonderful lovely fun exciting brilliant super neat glad sweet cute gorgeous beautiful incredible
    agree love like enjoy totally
    """.split()
)
_GENERIC_OBJECTS = frozenset(
    """
    idea ideas suggestion suggestions answer answers response responses help advice tip tips recommendation
    recommendations option options choice choices one ones first second third last point points question questions
    list plan way part bit place thing things stuff thought thoughts color colors colour colours texture
    vibe vibes design pic pics picture pictures photo photos shot shots view views detail details look style theme
    energy lighting sound message post story
    """.split()
)
_TIME_WORDS = frozenset(
    """
    next this coming last week weekend weekends month months year years tomorrow tonight today soon later
    someday sometime summer winter spring fall autumn morning afternoon evening night day days weeks ago yesterday
    recently
    monday tuesday wednesday thursday friday saturday sunday january february march april may june july
    august september october november december semester term end
    """.split()
)
_WEEKDAYS_MONTHS = (
    r"(?:mon|tues|wednes|thurs|fri|satur|sun)day"
    r"|january|february|march|april|may|june|july|august|september|october|november|december"
)


_UPPER_CASE_NAMES = frozenset({"US", "IT", "UK", "USA"})  # upper case, not the function words "us" and "it"


def _content_terms(text: str) -> list[str]:
    """Lower-cased, singularised content words of a text (for scoring and keys)."""
    terms = []
    for raw in _words(text):
        word = raw.lower()
        if word.endswith("'s"):
            word = word[:-2]
        if raw in _UPPER_CASE_NAMES:
            terms.append(word)
            continue
        if word in _STOPWORDS or (len(word) < 2 and not word.isdigit()):
            continue
        terms.append(_singular(word))
    return terms


def _slug(text: str, max_words: int = 4, drop_time: bool = False) -> str:
    if drop_time:
        text = _TIME_PHRASE.sub(" ", text)
    words = [w for w in _content_terms(text) if not (drop_time and w in _TIME_WORDS)]
    return "-".join(re.sub(r"[^a-z0-9\u00c0-\u024f]+", "-", w).strip("-") for w in words[:max_words])


# --------------------------------------------------------------------------------------------------------------
# First person to third person
# --------------------------------------------------------------------------------------------------------------

_PERSON_SWAPS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, flags), replacement)
    for pattern, replacement, flags in (
        (r"\bI\s+am\b", "they are", re.IGNORECASE),
        (r"\bI'm\b", "they're", re.IGNORECASE),
        (r"\bI\s+was\b", "they were", re.IGNORECASE),
        (r"\bI've\b", "they've", re.IGNORECASE),
        (r"\bI'd\b", "they'd", re.IGNORECASE),
        (r"\bI'll\b", "they'll", re.IGNORECASE),
        (r"\bI\b", "they", re.IGNORECASE),
        (r"\bmyself\b", "themselves", re.IGNORECASE),
        (r"\bourselves\b", "themselves", re.IGNORECASE),
        (r"\bmy\b", "their", re.IGNORECASE),
        (r"\bour\b", "their", re.IGNORECASE),
        (r"\bours\b", "theirs", re.IGNORECASE),
        (r"\bme\b", "them", re.IGNORECASE),
        (r"\bus\b", "them", 0),  # lower case only: "US" is a country
        (r"\bwe're\b", "they're", re.IGNORECASE),
        (r"\bwe've\b", "they've", re.IGNORECASE),
        (r"\bwe\b", "they", re.IGNORECASE),
        (r"\bmine$", "theirs", re.IGNORECASE),
    )
)

_MODALS = frozenset({"will", "would", "can", "could", "should", "shall", "may", "might", "must"})
_IRREGULAR_PAST = frozenset(
    """
    was were had did went got made took came saw flew left bought met ran began drove wrote knew thought told
    found gave sold sent spent felt kept lost won paid became brought built caught chose fell forgot grew heard
    hid held hurt quit read rode rang rose sang sat slept spoke stood stole swam taught threw understood woke wore
    """.split()
)
_THIRD_PERSON_IRREGULAR = {"be": "is", "am": "is", "have": "has", "do": "does", "go": "goes"}


def _third_person(text: str) -> str:
    """Swap first-person pronouns in a restated object for third-person ones (my -> their, me -> them ...)."""
    for pattern, replacement in _PERSON_SWAPS:
        text = pattern.sub(replacement, text)
    return text


def _conjugate(verb: str) -> str | None:
    """The third-person singular of a present-tense verb; None when it is not one we can safely conjugate."""
    low = verb.lower()
    if low in _THIRD_PERSON_IRREGULAR:
        return _THIRD_PERSON_IRREGULAR[low]
    if low in _MODALS or low in _IRREGULAR_PAST or low.endswith("ed") or not low.isalpha():
        return None
    if low.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if len(low) > 2 and low.endswith("y") and low[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


# --------------------------------------------------------------------------------------------------------------
# Clause analysis for insights
# --------------------------------------------------------------------------------------------------------------

# A new clause starts where the user speaks of themselves again: "I ...", or "my ... is/are ..." ("my name is").
_SUBJECT_AHEAD = r"(?=(?:I|I'm|I've|I'd|I'll|Im|Ive)\b|(?:my|our)(?:\s+[\w-]+){1,3}?(?:'s\s+name|\s+is|\s+are)\b)"
_CLAUSE_SPLIT = re.compile(
    r"\s*;\s*|:\s+|\s+[-\u2013\u2014]+\s+"
    r"|,?\s+(?:and|but|so|plus|because|cause|since|although|though|while|whereas|yet|also|and\s+also|and\s+now)\s+"
    + _SUBJECT_AHEAD
    + r"|,\s+"
    + _SUBJECT_AHEAD,
    re.IGNORECASE,
)
_DISCOURSE = re.compile(
    r"(?:oh\s+and|oh|ah|well|so|and|but|also|plus|btw|by\s+the\s+way|actually|anyway|anyways|yeah|yes|yep|yup|no"
    r"|ok|okay|alright|right|hi\s+there|hello\s+there|hey\s+there|hi|hello|hey|hiya|greetings|honestly|basically"
    r"|fun\s+fact|lol|haha|um|uh|hmm|in\s+fact|of\s+course|good\s+(?:morning|afternoon|evening)|as\s+you\s+know"
    r"|as\s+I\s+(?:said|mentioned)|like\s+I\s+said|for\s+the\s+record|for\s+context|fyi|quick\s+update|update"
    r"|guess\s+what|news|anyhow)(?![\w'])[\s,!.:;-]*",
    re.IGNORECASE,
)
_PAST_TIME = (
    r"last\s+(?:week(?:end)?|month|year|summer|winter|spring|fall|autumn|night|" + _WEEKDAYS_MONTHS + r")"
    r"|yesterday|recently|(?:a\s+(?:few\s+)?|a\s+couple\s+(?:of\s+)?|\d+\s+|two\s+|three\s+)"
    r"(?:days?|weeks?|months?|years?)\s+ago"
)
_FUTURE_TIME = (
    r"(?:next|this|coming|this\s+coming)\s+(?:week(?:end)?|month|year|summer|winter|spring|fall|autumn|semester"
    r"|term|morning|afternoon|evening|" + _WEEKDAYS_MONTHS + r")"
    r"|tomorrow(?:\s+(?:morning|afternoon|evening|night))?|tonight|later\s+(?:today|this\s+(?:week|month|year))"
    r"|in\s+(?:a\s+(?:few\s+)?|a\s+couple\s+(?:of\s+)?|\d+\s+|two\s+|three\s+)(?:days?|weeks?|months?|years?)"
    r"|(?:in|on)\s+(?:" + _WEEKDAYS_MONTHS + r")|soon"
)
_LEADING_TIME = re.compile(
    r"(?P<time>(?P<past>" + _PAST_TIME + r")|(?P<future>" + _FUTURE_TIME + r"))(?![\w'])[\s,]*", re.IGNORECASE
)
_TIME_PHRASE = re.compile(r"\b(?:" + _PAST_TIME + "|" + _FUTURE_TIME + r")\b", re.IGNORECASE)
_SKIP_START = re.compile(
    r"(?:if|unless|suppose|supposing|imagine|pretend|hypothetically|assuming|say|let's\s+say|what\s+if|in\s+case"
    r"|even\s+if|when|whenever|once|as\s+soon\s+as|should|would|could|do|does|did|can|will|is|are|am|was|were"
    r"|have|has|why|what|how|where|who|which|wish|i\s+wish)(?![\w'])",
    re.IGNORECASE,
)
# Hedges that put a whole sentence in doubt.
_HEDGE = re.compile(
    r"\b(?:maybe|perhaps|probably|possibly|i\s+guess|i\s+suppose|i\s+think|i\s+believe|i\s+wonder|not\s+sure"
    r"|kidding|joking|jk|hypothetically|in\s+theory|pretend|pretending|imagine|role[-\s]?play|wish"
    r"|in\s+my\s+dreams?)\b",
    re.IGNORECASE,
)
# Words that undo a statement when they come before the end of its object ("I live in Paris no longer").
_UNDONE = re.compile(r"\b(?:might|used\s+to|no\s+longer|anymore|any\s+more|not)\b", re.IGNORECASE)
_CONDITIONAL = re.compile(r"\b(?:if|unless|in\s+case|provided|assuming|supposing|whether)\b", re.IGNORECASE)
_OBJECT_STOP_WORDS = (
    r"\s?[-\u2013\u2014]{1,3}\s|\.\.\.|\s(?:and\s+(?:it|that|this|they|he|she|we|you|there|which|then)|because|cause"
    r"|since|but|although|though|while|whereas|unless|so\s+that|so|which|who|whom|whose|when|whenever|where|until"
    r"|except|just\s+kidding|lol|haha|btw|by\s+the\s+way)(?![\w'])"
    r"|\s+(?=I(?:'m|'ve|'d|'ll)?(?![\w']))"  # a run-on clause: "I love coffee I drink it daily"
)
_OBJECT_STOP = re.compile(r"\s*(?:[,;:()\[\]!?\"]|" + _OBJECT_STOP_WORDS + ")", re.IGNORECASE)
_LIST_STOP = re.compile(r"\s*(?:[;:()\[\]!?\"]|" + _OBJECT_STOP_WORDS + ")", re.IGNORECASE)
_TRAILING_FILLER = re.compile(
    r"(?:\s+(?:too|also|as\s+well|lol|haha|anyway|anyways|though|actually|honestly|really|now|right\s+now"
    r"|these\s+days|nowadays|at\s+the\s+moment|currently|for\s+now|a\s+lot|very\s+much|so\s+much|btw|tbh"
    r"|for\s+sure|i\s+guess|i\s+think|to\s+be\s+honest|i\s+mean))+$",
    re.IGNORECASE,
)
_REFERS_ELSEWHERE = frozenset(
    """
    it this that these those them him her he she they there here something anything everything nothing someone
    his its their theirs hers
    anyone everyone somebody anybody everybody what how why when where who which whatever whoever if whether
    """.split()
)
# Words that point at something only the conversation shows ("I love watching them", "I'll try making it").
_NOUN_PHRASE_STARTS = frozenset("a an the my our all some both most many more lots going being".split())
_POINTING = frozenset("it this that these those them him her".split())
_PRONOUN_OBJECTS = frozenset("it them him her".split())
_YOU = re.compile(r"\b(?:you|your|yours|yourself|u|ur)\b", re.IGNORECASE)
_META_VERBS = frozenset(
    """
    ask know say tell talk chat hear check confirm clarify understand thank add mention share discuss repeat
    explain cancel order change update let wait remember note consider keep have do need pass bet guess admit
    reply respond answer rephrase copy paste upload send give think see look help bother interrupt apologize
    apologise stop continue
    """.split()
)
_META_PHRASES = frozenset(
    {
        "make sure",
        "find out",
        "figure out",
        "go with",
        "get back",
        "come back",
        "be back",
        "learn more",
        "get started",
        "go back",
        "move on",
        "start over",
        "go ahead",
        "try again",
        "take a",
        "take it",
        "try my",
        "do my",
        "start thinking",
    }
)
_VAGUE_VERBS = frozenset(
    "go come leave stay try start begin sleep eat rest do get be make work play relax chill win sit stand".split()
)
_NEGATIONS = frozenset("never not no hardly barely rarely seldom nor don't didn't won't can't".split())
_BE_NOT_A_FACT = frozenset(
    """
    honest clear sure fine ok okay there here careful quick brief back right happy glad able frank straight
    done good alright
    """.split()
)


@dataclass(frozen=True)
class _Fact:
    key: str
    category: str
    text: str


@dataclass
class _Clause:
    """One clause of a user sentence, after leading discourse markers and a leading time phrase are removed."""

    text: str
    time: str | None = None
    future: bool = False


def _clauses(sentence: str) -> list[_Clause]:
    """Clauses of one sentence worth matching; empty for questions, hedges and hypotheticals."""
    sentence = sentence.strip()
    if not sentence or "?" in sentence or _HEDGE.search(sentence):
        return []
    lead = _strip_discourse(sentence)
    if _SKIP_START.match(lead):
        return []
    clauses: list[_Clause] = []
    carried = ""
    for piece in _CLAUSE_SPLIT.split(sentence):
        piece = f"{carried} {piece}".strip() if carried else piece.strip()
        carried = ""
        clause = _parse_clause(piece)
        if clause is None:
            continue
        if not clause.text:  # only a greeting or a time phrase: it belongs to the next clause
            carried = piece
            continue
        if _CONDITIONAL.search(clause.text):
            continue
        stop = _OBJECT_STOP.search(clause.text)
        if _UNDONE.search(clause.text[: stop.start()] if stop else clause.text):
            continue
        clauses.append(clause)
    return clauses


def _strip_discourse(text: str) -> str:
    while True:
        match = _DISCOURSE.match(text)
        if not match or match.end() == 0:
            return text
        text = text[match.end() :]


def _parse_clause(piece: str) -> _Clause | None:
    text = _strip_discourse(piece.strip(" ,"))
    time: str | None = None
    future = False
    match = _LEADING_TIME.match(text)
    if match:
        time = _normal_time(match.group("time"))
        future = match.group("future") is not None
        text = _strip_discourse(text[match.end() :])
    if _SKIP_START.match(text):
        return None
    return _Clause(text=text.strip(), time=time, future=future)


def _normal_time(phrase: str) -> str:
    words = re.sub(r"\s+", " ", phrase.strip()).lower().split(" ")
    day_or_month = re.compile(r"(?:" + _WEEKDAYS_MONTHS + r")$")
    return " ".join(w.capitalize() if day_or_month.match(w) else w for w in words)


def _clean_object(raw: str, *, is_list: bool = False) -> str | None:
    """The object of a pattern, cut at the end of its clause and stripped of fillers; None when nothing is left."""
    stop = (_LIST_STOP if is_list else _OBJECT_STOP).search(raw)
    text = raw[: stop.start()] if stop else raw
    if len(text) > _MAX_OBJECT_CHARS:  # the restatement is cut to MAX_INSIGHT_CHARS anyway; this bounds the work
        text = text[:_MAX_OBJECT_CHARS].rsplit(" ", 1)[0]
    text = text.strip().strip("\"'")
    previous = None
    while previous != text:
        previous = text
        text = _TRAILING_FILLER.sub("", text)
        text = text.rstrip(" .!,;:\u2026~*")
        text = re.sub(r"\s+(?:and|or|but|the|a|an|of|to|with|in|at|for|my)$", "", text, flags=re.IGNORECASE)
        text = re.sub(r"\s*[:;][-']?[)(DPp]$", "", text)  # emoticons
    return text or None


def _noun_object_ok(obj: str) -> bool:
    """Whether a noun-phrase object is about the user's world (not "it", not the assistant, not a generic word)."""
    words = [w.lower() for w in _words(obj)]
    if not words or words[0] in _REFERS_ELSEWHERE or _YOU.search(obj):
        return False
    if words[0] == "to":
        return _verb_object_ok(_ADVERBS.sub("", obj.split(None, 1)[1] if " " in obj else ""))
    untimed = [w.lower() for w in _words(_TIME_PHRASE.sub(" ", obj))]
    if any(w in _POINTING for w in untimed[:4]) or any(w in _PRONOUN_OBJECTS for w in untimed):
        return False
    if words[:2] == ["the", "way"] or (words[0] in _STOPWORDS and words[0] not in _NOUN_PHRASE_STARTS):
        return False
    if words[0] in _TIME_WORDS:
        return False
    content = _content_terms(obj)
    return bool(content) and content[0] not in _GENERIC_OBJECTS


def _place_ok(obj: str) -> bool:
    """A destination: a noun phrase ("a conference", "the gym") or a proper name ("Paris")."""
    first = _words(obj)[:1]
    if not first or not (first[0].lower() in {"a", "an", "the", "my", "our"} or first[0][0].isupper()):
        return False
    return _noun_object_ok(obj)


def _verb_object_ok(phrase: str) -> bool:
    """Whether ``verb ...`` (after "want to", "will", ...) states a goal or plan, not a conversational move."""
    words = [w.lower() for w in _words(phrase)]
    if not words or _YOU.search(phrase):
        return False
    verb = words[0]
    following = words[1] if len(words) > 1 else ""
    if verb in _META_VERBS or f"{verb} {following}" in _META_PHRASES or verb in _REFERS_ELSEWHERE:
        return False
    if verb in _NEGATIONS or verb in _MODALS or verb in _TIME_WORDS:
        return False
    if verb in _STOPWORDS and verb not in {"be", "get", "go", "going", "having", "doing", "getting"}:
        return False
    if following in _REFERS_ELSEWHERE and not (following == "how" and words[2:3] == ["to"]):
        return False
    untimed = [w.lower() for w in _words(_TIME_PHRASE.sub(" ", phrase))]
    if any(w in _POINTING or w in {"what", "whatever", "which"} for w in untimed[1:4]):
        return False
    if verb == "be" and (not following or following in _BE_NOT_A_FACT):
        return False
    return not (len(words) == 1 and verb in _VAGUE_VERBS)


def _restate(prefix: str, obj: str, suffix: str = "") -> str:
    """``prefix + obj + suffix + "."`` within ``MAX_INSIGHT_CHARS``, cut at a word boundary if needed."""
    text = f"{prefix}{_third_person(obj).strip()}{suffix}".rstrip()
    if len(text) < MAX_INSIGHT_CHARS:
        return f"{text}."
    cut = text[: MAX_INSIGHT_CHARS - 1]
    if " " in cut[len(prefix) :]:
        cut = cut.rsplit(" ", 1)[0]
    cut = re.sub(r"[\s,;:]+$", "", cut)
    cut = re.sub(r"\s+(?:and|or|but|the|a|an|of|to|with|in|at|for|their)$", "", cut, flags=re.IGNORECASE)
    return f"{cut}."


def _time_suffix(clause: _Clause) -> str:
    return f" {clause.time}" if clause.time else ""


# --------------------------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------------------------

_NAME_TOKEN = re.compile(r"[A-Za-z\u00c0-\u024f][A-Za-z\u00c0-\u024f'-]*")
_NOT_A_NAME = frozenset(
    """
    a an the not pretty really actually hard long weird difficult unusual common rare short also just very quite
    spelled spelt pronounced unique funny strange tricky on in at of to for from with by about into your my his her
    their our same similar like kind sort fine good great ok okay sorry sure here there back ready done happy sad
    tired hungry thirsty excited new old so still glad busy home well alright all too afraid confused curious
    interested free available single married retired divorced engaged vegan vegetarian sick ill cool bad awesome
    amazing terrible worried scared nervous stressed down up out over off only always never now grateful thankful
    doing feeling bored stuck lost late early right wrong correct fair sorry alone away almost already currently
    honestly literally basically simply totally definitely absolutely and but or so because if that this it
    nobody someone somebody anonymous unknown secret private irrelevant important hidden
    """.split()
)
_DEMONYMS = frozenset(
    """
    american british english scottish welsh irish canadian mexican brazilian argentinian argentine chilean colombian
    peruvian venezuelan cuban spanish portuguese french german italian dutch belgian swiss austrian swedish
    norwegian danish finnish icelandic polish czech slovak hungarian romanian bulgarian greek turkish russian
    ukrainian serbian croatian bosnian slovenian albanian lithuanian latvian estonian chinese japanese korean
    vietnamese thai filipino filipina indonesian malaysian singaporean indian pakistani bangladeshi nepali nepalese
    iranian persian iraqi israeli lebanese syrian jordanian saudi egyptian moroccan algerian tunisian nigerian
    ghanaian kenyan ethiopian australian taiwanese mongolian afghan emirati qatari yemeni sudanese somali ugandan
    tanzanian zimbabwean cameroonian senegalese jamaican haitian dominican ecuadorian bolivian uruguayan paraguayan
    guatemalan honduran salvadoran nicaraguan panamanian scandinavian european asian african latino latina
    hispanic arab armenian azerbaijani kazakh uzbek georgian
    """.split()
)
_NAME_FOLLOWERS = frozenset(
    "and but from by btw here nice pleased speaking again originally currently now too also".split()
)


def _parse_name(text: str, *, require_capital: bool, require_end: bool) -> str | None:
    """A person's name at the start of ``text`` (1 to 3 name-like words), title-cased; None when it is not one."""
    tokens = text.split()
    names: list[str] = []
    rest_index = 0
    for index, token in enumerate(tokens[:4]):
        bare = token.rstrip(".,!;:")
        low = bare.lower()
        if not _NAME_TOKEN.fullmatch(bare) or low.endswith("'s"):
            break
        if index == 0:
            if require_capital and not bare[0].isupper():
                return None
            if low in _NOT_A_NAME or low in _STOPWORDS or low in _TIME_WORDS or low in _DEMONYMS or low.endswith("ing"):
                return None
            if low in _PETS or low in _RELATIVES or low in _PROFESSIONS:
                return None
        elif not bare[0].isupper() or low in _NOT_A_NAME or low in _STOPWORDS or low in _NAME_FOLLOWERS:
            break
        names.append(bare[0].upper() + bare[1:])
        rest_index = index + 1
        if bare != token or len(names) == 3:
            break
    if not names:
        return None
    if require_end and rest_index < len(tokens) and tokens[rest_index - 1] == tokens[rest_index - 1].rstrip(".,!;:"):
        following = tokens[rest_index].lower().strip(".,!;:")
        if following not in _NAME_FOLLOWERS:
            return None
    return " ".join(names)


# --------------------------------------------------------------------------------------------------------------
# Patterns
# --------------------------------------------------------------------------------------------------------------

_ADV = (
    r"(?:(?:really|also|still|just|actually|absolutely|totally|truly|definitely|genuinely|honestly|currently|recently"
    r"|now|already|usually|generally|especially|always|kind\s+of|kinda|sort\s+of|so|seriously|certainly"
    r"|personally|mostly|finally|officially)\s+)*"
)
_ADVERBS = re.compile(r"^" + _ADV, re.IGNORECASE)
_I = r"I\s+(?:do\s+)?" + _ADV
_IM = r"(?:I'm|I\s+am|Im)\s+" + _ADV
_IVE = r"(?:I've|I\s+have|Ive)\s+" + _ADV
_ID = r"(?:I'd|I\s+would)\s+" + _ADV
_ILL = r"(?:I'll|I\s+will)\s+" + _ADV


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _canonical(spec: str) -> dict[str, str]:
    """``"dog: dog dogs puppy; cat: cat cats"`` -> ``{"dog": "dog", "dogs": "dog", "puppy": "dog", ...}``."""
    table: dict[str, str] = {}
    for group in spec.split(";"):
        canonical, words = group.split(":")
        table.update({word.replace("_", " "): canonical.strip() for word in words.split()})
    return table


_PETS = _canonical(
    "dog: dog dogs puppy puppies; cat: cat cats kitten kittens; parrot: parrot parrots; bird: bird birds;"
    "hamster: hamster hamsters; rabbit: rabbit rabbits bunny bunnies; fish: fish goldfish;"
    "turtle: turtle turtles tortoise; horse: horse horses; guinea-pig: guinea_pig guinea_pigs;"
    "snake: snake snakes; lizard: lizard lizards; ferret: ferret ferrets"
)
_RELATIVES = _canonical(
    "son: son sons; daughter: daughter daughters; children: kid kids child children; brother: brother brothers;"
    "sister: sister sisters; twin: twin twins; wife: wife; husband: husband; partner: partner; spouse: spouse;"
    "boyfriend: boyfriend; girlfriend: girlfriend; fiance: fiance fiancé fiancee fiancée;"
    "grandchildren: grandson granddaughter grandchild grandchildren grandkids; stepson: stepson;"
    "stepdaughter: stepdaughter; baby: baby; nephew: nephew nephews; niece: niece nieces"
)
_KIN_NOUNS = "|".join(sorted((re.escape(n) for n in {*_PETS, *_RELATIVES}), key=len, reverse=True))
_NUMBER = r"an?|one|two|three|four|five|six|seven|eight|nine|ten|\d{1,2}"
_PROFESSIONS = frozenset(
    """
    teacher nurse doctor physician surgeon engineer developer programmer coder designer lawyer attorney
    accountant student chef cook baker writer author novelist poet artist painter sculptor musician composer
    singer dancer actor actress photographer filmmaker director producer scientist researcher professor lecturer
    manager consultant analyst architect pilot driver firefighter officer farmer pharmacist dentist therapist
    psychologist psychiatrist counselor counsellor electrician plumber carpenter mechanic technician waiter
    waitress barista bartender cashier salesperson salesman saleswoman entrepreneur founder freelancer
    journalist reporter editor translator interpreter librarian veterinarian vet paramedic midwife caregiver
    caretaker economist historian mathematician physicist chemist biologist geologist statistician nanny soldier
    sailor marketer recruiter realtor banker broker trader investor intern tutor coach trainer instructor clerk
    secretary assistant receptionist administrator admin executive ceo cto cfo coo president supervisor
    contractor builder welder machinist janitor cleaner gardener landscaper hairdresser barber stylist
    beautician cosmetologist tailor jeweler jeweller butcher fisherman miner blogger youtuber streamer
    influencer podcaster copywriter illustrator animator videographer curator archivist pastor priest rabbi imam
    minister monk nun missionary diplomat politician judge paralegal detective guard ranger sociologist
    anthropologist linguist philosopher theologist astronomer neuroscientist epidemiologist optometrist
    radiologist pediatrician cardiologist dermatologist oncologist anesthesiologist chiropractor physiotherapist
    pharmacologist dietitian nutritionist housekeeper homemaker volunteer retiree pensioner undergrad
    undergraduate postdoc phd scholar apprentice resident
    """.split()
)
_PARENT_WORDS = _canonical(
    "parent: mom mum mother dad father parent; grandparent: grandmother grandfather grandma grandpa granny grandparent"
)
_DIETS = frozenset({"vegetarian", "vegan", "pescatarian", "pescetarian"})
_NOT_AN_OCCUPATION = frozenset(
    """
    good great bad terrible decent huge big massive total complete real pretty really very little bit awful amazing
    excellent better best worst okay ok fine horrible lousy wannabe fake aspiring former ex retired failed
    """.split()
)
_NP_STOP = frozenset(
    "at in for with from who that which and but by on of to since because so working living based here there".split()
)
_NOT_AN_EMPLOYER = frozenset(
    """
    night nights home weekends weekend moment least time times first once same living free fun money hour hours
    minute minutes day days week weeks month months year years while long noon midnight morning mornings evening
    evenings dawn lunch dinner breakfast myself
    """.split()
)
_NOT_A_PLACE = frozenset(
    "fear hope denial past peace harmony bubble head dream dreams moment present future world reality".split()
)
_NOT_STUDIES = frozenset("hard lot late tonight today right now moment".split())
_NOT_AN_ORIGIN = frozenset(
    "team department dept office company support it hr future here work school there past".split()
)


def _first_lower_word(text: str) -> str:
    words = _words(text)
    return words[0].lower() if words else ""


# Each handler takes the match and the clause and returns the facts it finds (empty when the match is not one).
_Handler = Callable[[re.Match[str], _Clause], list[_Fact]]


def _name_handler(require_capital: bool, require_end: bool) -> _Handler:
    def handle(match: re.Match[str], clause: _Clause) -> list[_Fact]:
        name = _parse_name(match.group("obj"), require_capital=require_capital, require_end=require_end)
        if name is None:
            return []
        return [_Fact("name", "identity", f"The user's name is {name}.")]

    return handle


def _handle_im_word(match: re.Match[str], clause: _Clause) -> list[_Fact]:
    """``I'm X``: a name ("I'm Ana") or a nationality ("I'm Portuguese")."""
    obj = match.group("obj")
    first = obj.split()[0].rstrip(".,!;:") if obj.split() else ""
    if first.lower() in _DEMONYMS:
        rest = obj[len(first) :].strip(" .,!;:")
        if rest and _first_lower_word(rest) not in _NAME_FOLLOWERS:
            return []
        return [_Fact("nationality", "identity", f"The user is {first[0].upper()}{first[1:].lower()}.")]
    name = _parse_name(obj, require_capital=True, require_end=True)
    return [_Fact("name", "identity", f"The user's name is {name}.")] if name else []


def _handle_age(match: re.Match[str], clause: _Clause) -> list[_Fact]:
    years = int(match.group("n"))
    if not 1 <= years <= 120:
        return []
    return [_Fact("age", "identity", f"The user is {years} years old.")]


def _handle_status(match: re.Match[str], clause: _Clause) -> list[_Fact]:
    rest = match.group("rest").strip()
    if rest and not re.match(r"(?:[,.!;]|and\b|but\b|now\b|since\b|for\b|with\b)", rest, re.IGNORECASE):
        return []
    word = re.sub(r"\s+", " ", match.group("word").lower()).replace("self employed", "self-employed")
    if word in _DIETS:
        return [_Fact("diet", "preference", f"The user is {word}.")]
    if word in {"married", "single", "divorced", "engaged", "widowed", "separated"}:
        return [_Fact("marital_status", "family", f"The user is {word}.")]
    return [_Fact("occupation", "work", f"The user is {word}.")]


def _handle_im_a(match: re.Match[str], clause: _Clause) -> list[_Fact]:
    """``I'm a/an X``: a profession, a parent, a diet; anything else is not recognised."""
    obj = _clean_object(match.group("obj"))
    if obj is None:
        return []
    words = obj.split()
    phrase: list[str] = []
    for word in words:
        if word.lower() in _NP_STOP:
            break
        phrase.append(word)
    if not phrase or len(phrase) > 4:
        return []
    head = phrase[-1].lower().strip(".,")
    modifiers = {w.lower() for w in phrase[:-1]}
    article = match.group("art").lower()
    if modifiers & _NOT_AN_OCCUPATION or _YOU.search(obj):
        return []
    if head in _DIETS:
        return [_Fact("diet", "preference", f"The user is {article} {head}.")]
    if head in _PARENT_WORDS:
        return [_Fact(f"family:{_PARENT_WORDS[head]}", "family", _restate(f"The user is {article} ", obj))]
    if head in _PROFESSIONS or _singular(head) in _PROFESSIONS:
        return [_Fact("occupation", "work", _restate(f"The user is {article} ", obj))]
    return []


def _handle_work_at(match: re.Match[str], clause: _Clause) -> list[_Fact]:
    obj = _clean_object(match.group("obj"))
    if obj is None or not _noun_object_ok(obj):
        return []
    first = _first_lower_word(obj)
    if first in _NOT_AN_EMPLOYER or first.isdigit():
        return []
    prep = match.group("prep").lower()
    prep = "for" if prep == "by" else prep
    employer, role = ([*re.split(r"\s+as\s+(?=an?\s)", obj, maxsplit=1, flags=re.IGNORECASE), ""])[:2]
    facts = [_Fact("employer", "work", _restate(f"The user works {prep} ", employer))]
    if role and _noun_object_ok(role):
        facts.append(_Fact("occupation", "work", _restate("The user works as ", role)))
    return facts


def _handle_work_as(match: re.Match[str], clause: _Clause) -> list[_Fact]:
    obj = _clean_object(match.group("obj"))
    if obj is None or not _noun_object_ok(obj):
        return []
    if _content_terms(obj)[-1:] in (["team"], ["group"], ["whole"], ["unit"], ["family"]):
        return []
    return [_Fact("occupation", "work", _restate("The user works as ", obj))]


def _place_handler(key: str, category: str, prefix: str, reject: frozenset[str]) -> _Handler:
    def handle(match: re.Match[str], clause: _Clause) -> list[_Fact]:
        obj = _clean_object(match.group("obj"))
        if obj is None or not _noun_object_ok(obj):
            return []
        if set(_content_terms(obj)) & reject:
            return []
        if key == "birthplace" and re.fullmatch(r"(?:1[89]|20)\d\d", obj):
            return [_Fact("birth_year", "identity", f"The user was born in {obj}.")]
        return [_Fact(key, category, _restate(prefix, obj, _time_suffix(clause)))]

    return handle


_PREFERENCE_VERBS = {
    "like": "likes",
    "love": "loves",
    "enjoy": "enjoys",
    "prefer": "prefers",
    "hate": "hates",
    "dislike": "dislikes",
    "adore": "adores",
    "detest": "detests",
    "loathe": "loathes",
    "despise": "despises",
}


def _preference_key(obj: str, verb: str) -> str:
    head = obj
    if verb == "prefer":
        head = re.split(r"\s+(?:over|rather\s+than|instead\s+of|than|to|more\s+than)\s+", obj, maxsplit=1)[0]
    if head.lower().startswith("to "):
        head = head[3:]
    return _slug(head)


_LIST_ITEM = r"(?!(?:it|it's|they|they're|that|this|he|she|we|you|I|I'm)\b)(?:[\w'-]+\s+){0,3}[\w'-]+"
_ENUMERATION = re.compile(
    _LIST_ITEM + r"(?:\s*,\s*" + _LIST_ITEM + r")+\s*,?\s+(?:and|or)\s+" + _LIST_ITEM + r"(?=\s*(?:[.,;:!?]|$))",
    re.IGNORECASE,
)


def _handle_preference(match: re.Match[str], clause: _Clause) -> list[_Fact]:
    listed = _ENUMERATION.match(match.group("obj"))
    obj = _clean_object(listed.group(0), is_list=True) if listed else _clean_object(match.group("obj"))
    if obj is None or not _noun_object_ok(obj):
        return []
    verb = match.groupdict().get("verb")
    slug = _preference_key(obj, (verb or "").lower())
    if not slug:
        return []
    if verb:
        prefix = f"The user {_PREFERENCE_VERBS[verb.lower()]} "
    elif match.groupdict().get("phrase"):
        prefix = "The user is " + re.sub(r"\s+", " ", match.group("phrase").lower()) + " "
    else:
        prefix = "The user can't stand "
    return [_Fact(f"preference:{slug}", "preference", _restate(prefix, obj))]


def _handle_allergy(match: re.Match[str], clause: _Clause) -> list[_Fact]:
    obj = _clean_object(match.group("obj"))
    if obj is None or not _noun_object_ok(obj):
        return []
    slug = _slug(obj)
    return [_Fact(f"allergy:{slug}", "health", _restate("The user is allergic to ", obj))] if slug else []


def _handle_favourite(match: re.Match[str], clause: _Clause) -> list[_Fact]:
    obj = _clean_object(match.group("obj"))
    thing = match.group("thing").strip()
    if obj is None or not _noun_object_ok(obj) or _YOU.search(thing) or not _slug(thing):
        return []
    copula = match.group("cop").lower()
    return [
        _Fact(
            f"preference:favorite-{_slug(thing)}",
            "preference",
            _restate(f"The user's favorite {thing.lower()} {copula} ", obj),
        )
    ]


def _verb_phrase_handler(
    category: str,
    prefix: str,
    key_prefix: str = "",
    *,
    noun_phrase: bool = False,
    or_place: bool = False,
    needs_time: bool = False,
) -> _Handler:
    """Goals and plans: ``<prefix> <verb phrase>`` (or a noun phrase), keyed by the phrase's content words.

    ``or_place``: the object may also be a place ("I'm going to a conference", "I'm going to Paris").
    ``needs_time``: only a statement with a time ("I'll be in Paris next week") is a plan; without one, "I'll ..."
    is mostly a promise within the conversation ("I'll bring my recipes").
    """

    def handle(match: re.Match[str], clause: _Clause) -> list[_Fact]:
        obj = _clean_object(match.group("obj"))
        if obj is None:
            return []
        if not (_noun_object_ok(obj) if noun_phrase else _verb_object_ok(obj) or (or_place and _place_ok(obj))):
            return []
        if needs_time and not (clause.time or _TIME_PHRASE.search(obj)):
            return []
        slug = _slug(f"{key_prefix} {obj}", drop_time=True)
        if not slug:
            return []
        text = _restate(prefix, obj, _time_suffix(clause))
        return [_Fact(f"{category}:{slug}", category, text)]

    return handle


def _handle_my_goal(match: re.Match[str], clause: _Clause) -> list[_Fact]:
    obj = _clean_object(match.group("obj"))
    if obj is None:
        return []
    first = _first_lower_word(obj)
    if not (first in {"to", "a", "an", "the", "my"} or first.endswith("ing")):
        return []
    verb_phrase = obj[3:] if first == "to" else obj
    if not (_verb_object_ok(verb_phrase) if first == "to" else _noun_object_ok(obj)):
        return []
    noun = match.group("noun").lower()
    category = "plan" if noun.startswith("plan") else "goal"
    slug = _slug(verb_phrase, drop_time=True)
    if not slug:
        return []
    adjectives = re.sub(r"\s+", " ", match.group("adj").lower())
    middle = re.sub(r"\s+", " ", match.group("mid") or "").rstrip()
    copula = "are" if match.group("cop").strip().lower() == "are" else "is"
    return [_Fact(f"{category}:{slug}", category, _restate(f"The user's {adjectives}{noun}{middle} {copula} ", obj))]


def _handle_have(match: re.Match[str], clause: _Clause) -> list[_Fact]:
    """``I have a dog named Rex``, ``I have two kids and a cat``: pets and family."""
    facts: list[_Fact] = []
    for index, item in enumerate(_HAVE_AND.split(match.group("obj"))):
        item_match = _HAVE_ITEM.match(item)
        found = _have_item(item_match) if item_match else []
        if not found and index == 0:
            return []
        facts.extend(found)
    return facts


def _have_item(match: re.Match[str]) -> list[_Fact]:
    noun = re.sub(r"\s+", " ", match.group("noun").lower())
    number = match.group("num").lower()
    adjectives = re.sub(r"\s+", " ", match.group("adj") or "")
    after = match.group("after")
    name: str | None = None
    named = re.match(r"\s+(?:named|called)\s+(?P<name>.+)", after, re.IGNORECASE)
    if named:
        name = _parse_name(named.group("name"), require_capital=False, require_end=False)
        if name is None:
            return []
    elif after.strip() and not re.match(
        r"\s*(?:[,.!;]|(?:who|that|which|and|but|at|in|so|from|with|now)\b)", after, re.IGNORECASE
    ):
        return []
    plural = noun in {"children", "grandchildren", "grandkids"} or (noun.endswith("s") and noun not in _NOT_PLURAL)
    if noun not in {"fish", "goldfish"} and plural == (number in {"a", "an", "one"}):
        return []  # "a kids", "two dog": not a statement we can restate reliably
    if plural:
        name = None  # "two cats named Tom and Jerry": one name per key is all a key can hold
    if _YOU.search(adjectives) or set(adjectives.lower().split()) & {"no", "not", "imaginary", "fake"}:
        return []
    kind, canonical = ("pet", _PETS[noun]) if noun in _PETS else ("family", _RELATIVES[noun])
    key = f"{kind}:{canonical}" + (f":{name.lower().replace(' ', '-')}" if name else "")
    text = f"The user has {number} {adjectives}{noun}" + (f" named {name}" if name else "")
    return [_Fact(key, kind, _restate(text, ""))]


_HAVE_ITEM = _rx(
    r"(?P<num>" + _NUMBER + r")\s+(?P<adj>(?:(?!named\b|called\b)[\w-]+\s+){0,2}?)(?P<noun>" + _KIN_NOUNS + r")"
    r"(?P<after>(?![\w'-]).*)"
)
_HAVE_AND = re.compile(r"\s*,?\s+and\s+(?=(?:" + _NUMBER + r")\s)", re.IGNORECASE)


def _handle_my_kin_name(match: re.Match[str], clause: _Clause) -> list[_Fact]:
    noun = re.sub(r"\s+", " ", match.group("noun").lower())
    name = _parse_name(match.group("obj"), require_capital=False, require_end=False)
    if name is None:
        return []
    kind, canonical = ("pet", _PETS[noun]) if noun in _PETS else ("family", _RELATIVES[noun])
    key = f"{kind}:{canonical}:{name.lower().replace(' ', '-')}"
    return [_Fact(key, kind, f"The user has {_article(noun)} {noun} named {name}.")]


def _handle_future(match: re.Match[str], clause: _Clause) -> list[_Fact]:
    """``Next week I fly to Rome``: a plan, restated with the verb in the third person."""
    if not clause.future:
        return []
    subject = re.sub(r"\s+", " ", match.group("subj").lower())
    rest = _ADVERBS.sub("", match.group("obj"))
    if _first_lower_word(rest) in _NEGATIONS:
        return []
    if subject in {"i'm", "i am", "im"}:
        verb_text, obj = "is", _clean_object(rest)
        check = obj
    elif subject in {"i have", "i've got", "i have got", "ive got"}:
        verb_text, obj = "has", _clean_object(rest)
        check = f"get {obj}" if obj else None
    else:
        parts = rest.split(None, 1)
        if not parts:
            return []
        if parts[0][0].isupper() or (parts[0].lower() in _STOPWORDS and parts[0].lower() not in {"go", "get", "have"}):
            return []
        conjugated = _conjugate(parts[0])
        if conjugated is None:
            return []
        verb_text, obj = conjugated, _clean_object(parts[1]) if len(parts) > 1 else None
        check = f"{parts[0]} {obj or ''}"
    if obj is None or check is None or not _verb_object_ok(check) or _first_lower_word(obj) in {"not", "never"}:
        return []
    slug = _slug(f"{verb_text} {obj}" if verb_text not in {"is", "has"} else obj, drop_time=True)
    if not slug:
        return []
    return [_Fact(f"plan:{slug}", "plan", _restate(f"The user {verb_text} ", obj, _time_suffix(clause)))]


_RULES: tuple[tuple[re.Pattern[str], _Handler], ...] = (
    # identity
    (
        _rx(r"my\s+(?:first\s+|full\s+|real\s+|given\s+)?name(?:'s|\s+is)\s+(?P<obj>.+)"),
        _name_handler(False, False),
    ),
    (_rx(r"(?:you\s+can\s+|please\s+|just\s+)?call\s+me\s+(?P<obj>.+)"), _name_handler(True, True)),
    (_rx(_IM + r"(?:called|named)\s+(?P<obj>.+)"), _name_handler(False, False)),
    (_rx(r"(?:I'm|I\s+am|Im)\s+(?P<n>\d{1,3})(?:\s*(?:years?\s+old|yrs?\s+old|y/?o))?[\s.!]*$"), _handle_age),
    # goals and plans stated as "my goal is ..."
    (
        _rx(
            r"my\s+(?P<adj>(?:(?:main|biggest|big|ultimate|long[-\s]term|short[-\s]term|personal|career|life"
            r"|fitness|new|next|current|real|only|top|number\s+one)\s+)*)(?P<noun>goals?|dreams?|aims?|ambitions?"
            r"|plans?|hopes?|resolutions?)(?P<mid>(?:\s+(?:for|this|next|in)\s+[\w-]+(?:\s+(?:year|month|week))?)?)"
            r"(?P<cop>\s+is|\s+are|'s)\s+(?P<obj>.+)"
        ),
        _handle_my_goal,
    ),
    (
        _rx(
            r"my\s+(?:all[-\s]time\s+)?favou?rite\s+(?P<thing>[\w-]+(?:\s+[\w-]+){0,2}?)\s+(?P<cop>is|are)\s+"
            r"(?P<obj>.+)"
        ),
        _handle_favourite,
    ),
    (
        _rx(r"my\s+(?P<noun>" + _KIN_NOUNS + r")(?:'s\s+name\s+is|\s+is\s+(?:named|called))\s+(?P<obj>.+)"),
        _handle_my_kin_name,
    ),
    # status words
    (
        _rx(
            _IM + r"(?P<word>retired|unemployed|self[-\s]employed|between\s+jobs|married|single|divorced|engaged"
            r"|widowed|separated|vegetarian|vegan|pescatarian|pescetarian)(?P<rest>(?![\w-]).*)"
        ),
        _handle_status,
    ),
    # preferences phrased with "I'm"
    (_rx(_IM + r"allergic\s+to\s+(?P<obj>.+)"), _handle_allergy),
    (
        _rx(
            _IM + r"(?P<phrase>into|passionate\s+about|obsessed\s+with|crazy\s+about|fond\s+of"
            r"|an?\s+(?:big|huge|massive|great)\s+fan\s+of|an?\s+fan\s+of)\s+(?P<obj>.+)"
        ),
        _handle_preference,
    ),
    # work
    (
        _rx(
            r"(?:" + _I + r"work|" + _IVE + r"been\s+working|" + _IM + r"working|" + _IM + r"employed)"
            r"\s+(?P<prep>at|for|by)\s+(?P<obj>.+)"
        ),
        _handle_work_at,
    ),
    (
        _rx(r"(?:" + _I + r"work|" + _IVE + r"been\s+working|" + _IM + r"working)\s+as\s+(?P<obj>.+)"),
        _handle_work_as,
    ),
    (_rx(_IM + r"(?P<art>an?)\s+(?P<obj>.+)"), _handle_im_a),
    (
        _rx(_IM + r"(?:studying|majoring\s+in)\s+(?!for\b|to\b)(?P<obj>.+)"),
        _place_handler("studies", "education", "The user is studying ", _NOT_STUDIES),
    ),
    # places
    (
        _rx(r"(?:" + _I + r"live|" + _IM + r"living)\s+in\s+(?P<obj>.+)"),
        _place_handler("location", "location", "The user lives in ", _NOT_A_PLACE),
    ),
    (
        _rx(_IVE + r"(?:been\s+living|lived)\s+in\s+(?P<obj>.+)"),
        _place_handler("location", "location", "The user has lived in ", _NOT_A_PLACE),
    ),
    (
        _rx(r"(?:" + _I + r"|" + _IVE + r")(?:moved|relocated)\s+to\s+(?P<obj>.+)"),
        _place_handler("location", "location", "The user moved to ", _NOT_A_PLACE),
    ),
    (
        _rx(r"(?:" + _IM + r"(?:originally\s+)?from|" + _I + r"(?:originally\s+)?come\s+from)\s+(?P<obj>.+)"),
        _place_handler("origin", "location", "The user is from ", _NOT_AN_ORIGIN),
    ),
    (
        _rx(_I + r"grew\s+up\s+in\s+(?P<obj>.+)"),
        _place_handler("hometown", "location", "The user grew up in ", _NOT_A_PLACE),
    ),
    (
        _rx(r"I\s+was\s+born\s+(?:and\s+raised\s+)?in\s+(?P<obj>.+)"),
        _place_handler("birthplace", "location", "The user was born in ", _NOT_A_PLACE),
    ),
    # preferences
    (
        _rx(_I + r"(?P<verb>like|love|enjoy|prefer|hate|dislike|adore|detest|loathe|despise)\s+(?P<obj>.+)"),
        _handle_preference,
    ),
    (_rx(_I + r"(?:can't|cannot|can\s+not)\s+stand\s+(?P<obj>.+)"), _handle_preference),
    # goals
    (_rx(_I + r"(?:want\s+to|wanna)\s+" + _ADV + r"(?P<obj>.+)"), _verb_phrase_handler("goal", "The user wants to ")),
    (_rx(_ID + r"like\s+to\s+(?P<obj>.+)"), _verb_phrase_handler("goal", "The user would like to ")),
    (_rx(_ID + r"love\s+to\s+(?P<obj>.+)"), _verb_phrase_handler("goal", "The user would love to ")),
    (
        _rx(r"(?:" + _I + r"hope|" + _IM + r"hoping)\s+to\s+(?P<obj>.+)"),
        _verb_phrase_handler("goal", "The user hopes to "),
    ),
    (_rx(_I + r"aim\s+to\s+(?P<obj>.+)"), _verb_phrase_handler("goal", "The user aims to ")),
    (_rx(_I + r"aspire\s+to\s+(?P<obj>.+)"), _verb_phrase_handler("goal", "The user aspires to ")),
    (_rx(_I + r"dream\s+(?:of|about)\s+(?P<obj>.+)"), _verb_phrase_handler("goal", "The user dreams of ")),
    (
        _rx(_IM + r"saving\s+(?:up\s+)?(?:for|to)\s+(?P<obj>.+)"),
        _verb_phrase_handler("goal", "The user is saving for "),
    ),
    # plans
    (
        _rx(_IM + r"(?:going\s+to|gonna)\s+" + _ADV + r"(?P<obj>.+)"),
        _verb_phrase_handler("plan", "The user is going to ", or_place=True),
    ),
    (_rx(_I + r"plan\s+to\s+(?P<obj>.+)"), _verb_phrase_handler("plan", "The user plans to ")),
    (_rx(_IM + r"planning\s+to\s+(?P<obj>.+)"), _verb_phrase_handler("plan", "The user plans to ")),
    (_rx(_IM + r"planning\s+on\s+(?P<obj>.+)"), _verb_phrase_handler("plan", "The user is planning on ")),
    (
        _rx(_IM + r"planning\s+(?P<obj>(?:a|an|my|our)\s+.+)"),
        _verb_phrase_handler("plan", "The user is planning ", noun_phrase=True),
    ),
    (_rx(_I + r"intend\s+to\s+(?P<obj>.+)"), _verb_phrase_handler("plan", "The user intends to ")),
    (_rx(_IVE + r"decided\s+to\s+(?P<obj>.+)"), _verb_phrase_handler("plan", "The user has decided to ")),
    (
        _rx(_IM + r"(?:moving|relocating)\s+to\s+(?P<obj>.+)"),
        _verb_phrase_handler("plan", "The user is moving to ", key_prefix="move to"),
    ),
    (_rx(_ILL + r"(?P<obj>.+)"), _verb_phrase_handler("plan", "The user will ", needs_time=True)),
    # family and pets
    (
        _rx(r"(?:" + _I + r"have(?:\s+got)?|(?:I've|Ive)\s+got)\s+(?P<obj>(?:" + _NUMBER + r")\s+.+)"),
        _handle_have,
    ),
    # "I'm Ana", "I'm Portuguese"
    (_rx(r"(?:I'm|I\s+am|Im)\s+(?P<obj>.+)"), _handle_im_word),
    # "next week I fly to Rome"
    (
        _rx(r"(?P<subj>I'm|I\s+am|Im|I've\s+got|Ive\s+got|I\s+have(?:\s+got)?|I)\s+(?P<obj>.+)"),
        _handle_future,
    ),
)


def _facts_in_sentence(sentence: str) -> list[_Fact]:
    facts: list[_Fact] = []
    for clause in _clauses(sentence):
        for pattern, handler in _RULES:
            match = pattern.match(clause.text)
            if match is None:
                continue
            found = handler(match, clause)
            if found:
                facts.extend(found)
                break
    return facts


def _facts_in_message(message: str) -> list[_Fact]:
    facts: list[_Fact] = []
    for sentence in _split_sentences(message):
        facts.extend(_facts_in_sentence(sentence))
    return facts


# --------------------------------------------------------------------------------------------------------------
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

    @property
    def words(self) -> int:
        return _word_count(self.text)


def _is_filler(sentence: str) -> bool:
    """Greetings, thanks, goodbyes and acknowledgements, unless they also state a fact ("Hi, I'm Ana")."""
    content = [w for w in _words(sentence) if w.lower() not in _STOPWORDS and w.lower() not in _FILLER]
    if not content:
        return True
    if _OPENER.match(sentence) and len(content) <= 2:
        return not _facts_in_sentence(sentence)
    if _INTERJECTION.match(sentence) and all(w[:1].isupper() for w in content):  # "Wow, Caroline!"
        return not _facts_in_sentence(sentence)
    return False


def _usable(sentence: str) -> bool:
    return bool(sentence) and not sentence.rstrip().endswith("?") and not _is_filler(sentence)


def _turn_sentences(turns: Sequence[Turn], start: int, group: str) -> list[_Sentence]:
    out: list[_Sentence] = []
    order = start
    for turn in turns:
        for role, message, weight in (
            ("User", turn.user_message, _USER_WEIGHT),
            ("Assistant", turn.agent_message, _AGENT_WEIGHT),
        ):
            for text in _split_sentences(message):
                order += 1
                if not _usable(text):
                    continue
                bonus = _FACT_BONUS if role == "User" and _facts_in_sentence(text) else 1.0
                if role == "User" and not any(s.role == "User" for s in out):
                    bonus *= _OPENING_BONUS
                out.append(_Sentence(text, role, f"turn:{turn.seq}:{role}", group, order, weight * bonus))
    return out


def _summary_sentences(summary: str, start: int, source: str) -> list[_Sentence]:
    """Sentences of an earlier summary; ``User:``/``Assistant:`` line labels are kept as roles."""
    out: list[_Sentence] = []
    order = start
    for line_no, raw_line in enumerate(summary.translate(_TYPOGRAPHIC).splitlines()):
        line = raw_line.strip()
        label = _LABEL.match(line)
        role: str | None = None
        if label:
            role = "User" if label.group(1).lower() == "user" else "Assistant"
            line = line[label.end() :]
        for text in _split_sentences(line):
            order += 1
            if not _usable(text):
                continue
            weight = _AGENT_WEIGHT if role == "Assistant" else _USER_WEIGHT
            if role != "Assistant" and _facts_in_sentence(text):
                weight *= _FACT_BONUS
            out.append(_Sentence(text, role, f"{source}:{line_no}", source, order, weight))
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
            w for w in _words(sentence.text)[1:] if (w[:1].isupper() or w.isdigit()) and w.lower() not in _STOPWORDS
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
            if used + cost(index) <= budget:
                chosen.append(index)
                used += cost(index)
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
    """At most ``max_words`` words, cut at the end of the last line or word that fits."""
    if max_words <= 0:
        return ""
    kept: list[str] = []
    remaining = max_words
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if len(words) <= remaining:
            kept.append(" ".join(words))
            remaining -= len(words)
            continue
        if remaining > 0:
            kept.append(" ".join(words[:remaining]).rstrip(",;:") + "\u2026")
        break
    return "\n".join(kept)


def _best_truncated(sentences: Sequence[_Sentence], scores: Sequence[float], budget: int) -> str:
    """When no whole sentence fits: the best one, cut to the budget."""
    candidates = [i for i in range(len(sentences)) if scores[i] > 0]
    if not candidates or budget <= 0:
        return ""
    best = min(candidates, key=lambda i: (-scores[i], sentences[i].order))
    return _cap_words(_render([sentences[best]]), budget)


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
        return _summarize_turns(turns, previous_summary, max_words)

    async def summarize_session(self, chunks: Sequence[Chunk], turns: Sequence[Turn], max_words: int = 200) -> str:
        """The most informative sentences of the chunk summaries and the remaining turns, in order.

        Args:
            chunks: The session's chunks (their summaries are the input, not their turns).
            turns: The turns not yet in a chunk.
            max_words: Upper bound on the words of the result.

        Returns:
            Plain text of at most ``max_words`` words; each chunk contributes a sentence when the budget allows.
        """
        return _summarize_session(chunks, turns, max_words)

    async def extract_insights(self, turns: Sequence[Turn]) -> list[InsightCandidate]:
        """Facts the user stated about themselves, restated in the third person.

        Args:
            turns: The turns to read; only their user messages are used.

        Returns:
            One candidate per distinct (key, text), with every turn it was stated in, in order of first mention.
        """
        return extract_insights(turns)

    async def close(self) -> None:
        """Nothing to release."""


def extract_insights(turns: Sequence[Turn]) -> list[InsightCandidate]:
    """The synchronous core of :meth:`LocalChatModel.extract_insights`.

    Args:
        turns: The turns to read; only their user messages are used.

    Returns:
        One candidate per distinct (key, text), with every turn it was stated in, in order of first mention.
    """
    found: dict[tuple[str, str], tuple[_Fact, list[int]]] = {}
    for turn in turns:
        for fact in _facts_in_message(turn.user_message):
            entry = found.setdefault((fact.key, fact.text), (fact, []))
            if turn.seq not in entry[1]:
                entry[1].append(turn.seq)
    return [
        InsightCandidate(key=fact.key[:200], category=fact.category, text=fact.text, source_turns=sorted(seqs))
        for fact, seqs in found.values()
    ]
