import asyncio
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_core.adapters import local_chat
from memory_core.adapters.local_chat import MAX_INSIGHT_CHARS, LocalChatModel, extract_insights
from memory_core.domain import Chunk, Turn
from memory_core.ports import ChatModel
from memory_core.text import lemma, sentences, singular, third_person

T0 = datetime(2026, 2, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def turn(seq: int, user: str, agent: str = "Okay.") -> Turn:
    return Turn(
        user_id="u",
        session_id="s",
        seq=seq,
        turn_id=f"t{seq}",
        user_message=user,
        agent_message=agent,
        timestamp=T0,
    )


def chunk(index: int, summary: str) -> Chunk:
    return Chunk(user_id="u", session_id="s", index=index, first_seq=1, last_seq=1, summary=summary, timestamp=T0)


def facts(message: str) -> list[tuple[str, str, str]]:
    return [(c.key, c.category, c.text) for c in extract_insights([turn(1, message)])]


def test_is_a_chat_model():
    assert isinstance(LocalChatModel(), ChatModel)


# ---------------------------------------------------------------------------------------------------------------
# Insights: issue 13's examples, then what is kept and what is left out
# ---------------------------------------------------------------------------------------------------------------

ISSUE_13 = [
    ("I've been vegan for five years", [("diet", "health", "The user has been vegan for five years.")]),
    (
        "My wife and I adopted a puppy called Biscuit",
        [("pet:puppy:biscuit", "pet", "The user and their wife adopted a puppy called Biscuit.")],
    ),
    ("We're relocating to Denver", [("plan:move:denver", "plan", "The user is relocating to Denver.")]),
    ("I used to live in Berlin", [("former-location:berlin", "location", "The user used to live in Berlin.")]),
    (
        "I love sci-fi but hate horror",
        [
            ("preference:sci-fi", "preference", "The user loves sci-fi."),
            ("preference:horror", "preference", "The user hates horror."),
        ],
    ),
    ("my name is ana silva", [("name", "identity", "The user's name is Ana Silva.")]),
]


@pytest.mark.parametrize(("message", "expected"), ISSUE_13)
def test_the_examples_of_issue_13(message, expected):
    assert facts(message) == expected


def test_a_possessive_is_not_a_name():
    assert not [f for f in facts("I'm Dr. Smith's patient.") if f[0] == "name"]
    assert facts("I'm Ana.") == [("name", "identity", "The user's name is Ana.")]


def test_abbreviations_do_not_end_a_sentence():
    assert sentences("I landed at 3 p.m. in the U.S. yesterday. It was late.") == [
        "I landed at 3 p.m. in the U.S. yesterday. ",
        "It was late.",
    ]
    assert facts("I landed at 3 p.m. in the U.S. yesterday.") == [
        ("land:3-p-m-u", "statement", "The user landed at 3 p.m. in the U.S. yesterday.")
    ]


def test_word_forms_come_from_lemminflect():
    assert singular("buses") == "bus"
    assert singular("Children") == "Child"
    assert lemma("went") == "go" and lemma("stories") == "story" and lemma("paintings") == "paint"
    assert third_person("relocate") == "relocates" and third_person("have") == "has"


POSITIVE = [
    ("My name is Ana.", "name", "The user's name is Ana."),
    ("You can call me Sam.", "name", "The user's name is Sam."),
    ("I live in Lisbon.", "location", "The user lives in Lisbon."),
    ("I moved to Berlin last year.", "location", "The user moved to Berlin last year."),
    ("Last year, I moved to Berlin.", "location", "The user moved to Berlin last year."),
    ("I'm moving to Madrid next year.", "plan:move:madrid-next-year", "The user is moving to Madrid next year."),
    ("I work as a pediatric nurse.", "occupation", "The user works as a pediatric nurse."),
    ("I work at Contoso.", "employer", "The user works at Contoso."),
    ("I'm vegetarian.", "diet", "The user is vegetarian."),
    ("I am allergic to peanuts.", "allergy:peanut", "The user is allergic to peanuts."),
    ("I love coffee.", "preference:coffee", "The user loves coffee."),
    ("I prefer green tea over coffee.", "preference:green-tea-coffee", "The user prefers green tea over coffee."),
    ("I have a dog named Rex.", "pet:dog:rex", "The user has a dog named Rex."),
    (
        "Lost my job as a banker yesterday.",
        "lose:job-banker-yesterday",
        "The user lost their job as a banker yesterday.",
    ),
    (
        "Last week, I found these old notebooks with my early writings.",
        "find:old-notebook-early-writings",
        "The user found these old notebooks with their early writings last week.",
    ),
]


@pytest.mark.parametrize(("message", "key", "text"), POSITIVE)
def test_statements_about_the_user_are_restated_in_their_words(message, key, text):
    assert (key, text) in [(k, t) for k, _c, t in facts(message)], facts(message)


NEGATIVE = [
    # questions
    "Do I like coffee?",
    "I love coffee, do you?",
    # the other person
    "I love your store.",
    "I'm so happy for you!",
    "My friend likes coffee.",
    "She is a doctor.",
    # hypotheticals, hedges
    "If I lived in Paris, I would love croissants.",
    "Maybe I'll move to Berlin.",
    "I might move to Berlin.",
    "I wish I lived in Paris.",
    # pronouns and small talk
    "I love it!",
    "I'm so excited!",
    "Thanks, I really appreciate it.",
    "I love the color.",
    "I'll let you know.",
    # too vague to keep
    "I'm staying positive and pushing forward.",
    "I will make some awesome memories.",
    # not a name
    "I'm Going home.",
    "I'm Dr. Smith's patient.",
    # greetings
    "Hi!",
    "Thanks so much, bye!",
]


@pytest.mark.parametrize("message", NEGATIVE)
def test_questions_others_hedges_and_small_talk_give_no_insight(message):
    assert [f for f in facts(message) if f[0] == "name" or "Smith" not in message] == []


def test_like_and_hate_of_the_same_thing_share_a_key():
    found = extract_insights([turn(1, "I love coffee."), turn(2, "Actually I hate coffee now.")])
    assert [(c.key, c.source_turns) for c in found] == [("preference:coffee", [1]), ("preference:coffee", [2])]


def test_agent_messages_are_ignored():
    turns = [turn(1, "Hello there.", "I'm Max, I live in Paris and I love coffee.")]
    assert extract_insights(turns) == []


def test_duplicates_merge_their_source_turns():
    found = extract_insights(
        [turn(1, "I live in Lisbon."), turn(2, "Nice weather."), turn(3, "As I said, I live in Lisbon!")]
    )
    assert [(c.key, c.text, c.source_turns) for c in found] == [("location", "The user lives in Lisbon.", [1, 3])]


def test_insight_texts_are_bounded_at_a_word_boundary():
    long_object = " ".join(["hiking on beautiful and extremely long winding mountain trails"] * 20)
    (candidate,) = extract_insights([turn(1, f"I love {long_object}.")])
    assert len(candidate.text) <= MAX_INSIGHT_CHARS
    assert candidate.text.startswith("The user loves hiking on beautiful")
    assert candidate.text.endswith(".") and not candidate.text.endswith(" .")
    assert len(candidate.key) <= 200


async def test_extract_insights_is_deterministic():
    model = LocalChatModel()
    turns = [turn(i + 1, message) for i, (message, *_rest) in enumerate(POSITIVE + ISSUE_13)]
    first = await model.extract_insights(turns)
    second = await model.extract_insights(turns)
    assert first == second
    assert len(first) >= len(POSITIVE)


def test_output_does_not_depend_on_hash_seed():
    script = (
        "import json\n"
        "from datetime import UTC, datetime\n"
        "from memory_core.adapters.local_chat import _summarize_turns, extract_insights\n"
        "from memory_core.domain import Turn\n"
        "msgs = json.loads(input())\n"
        "turns = [Turn(user_id='u', session_id='s', seq=i + 1, turn_id=str(i), user_message=m, agent_message=m,"
        " timestamp=datetime(2026, 1, 1, tzinfo=UTC)) for i, m in enumerate(msgs)]\n"
        "print(json.dumps([[c.model_dump() for c in extract_insights(turns)], _summarize_turns(turns, '', 60)]))\n"
    )
    messages = [message for message, *_ in POSITIVE[:30]] + ["The weather in Lisbon is sunny and warm today."]
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(messages),
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=300), min_size=1, max_size=4))
def test_extraction_never_fails_and_keeps_its_bounds(messages):
    found = extract_insights([turn(i + 1, m) for i, m in enumerate(messages)])
    for candidate in found:
        assert 0 < len(candidate.text) <= MAX_INSIGHT_CHARS
        assert candidate.key and len(candidate.key) <= 200
        assert candidate.source_turns


# ---------------------------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------------------------

TRIP = [
    turn(1, "Hi!", "Hello! How can I help you today?"),
    turn(
        2,
        "I'm planning a trip to Japan in April with my sister. We want to see the cherry blossoms in Kyoto.",
        "That sounds wonderful. Kyoto in early April is usually peak cherry blossom season. "
        "Would you like hotel suggestions?",
    ),
    turn(
        3,
        "Yes please. My budget is around 150 euros per night.",
        "For 150 euros per night, ryokans in Gion or business hotels near Kyoto Station are good options.",
    ),
    turn(4, "Great, thanks!", "You're welcome! Anything else?"),
    turn(
        5,
        "I'm vegetarian, so food might be tricky. Any tips?",
        "Shojin ryori, Buddhist temple cuisine, is fully vegetarian and popular in Kyoto.",
    ),
    turn(6, "Thanks so much, bye!", "Goodbye and have a great trip!"),
]


def sentences_of(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        body = line.split(": ", 1)[1] if line.startswith(("User: ", "Assistant: ")) else line
        out.append(body)
    return out


def source_text(turns, *extra: str) -> str:
    return " ".join([t.user_message + " " + t.agent_message for t in turns] + list(extra))


async def test_summary_keeps_the_informative_sentences_and_drops_greetings_and_thanks():
    summary = await LocalChatModel().summarize(TRIP, "", max_words=80)
    assert "User: I'm planning a trip to Japan in April with my sister." in summary
    assert "I'm vegetarian" in summary
    for filler in ("Hi!", "Great, thanks!", "Thanks so much, bye!", "You're welcome", "Goodbye"):
        assert filler not in summary
    assert len(summary.split()) <= 80


async def test_a_question_comes_with_its_answer_and_a_reply_with_its_turn():
    summary = await LocalChatModel().summarize(TRIP, "", max_words=80)
    lines = summary.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Assistant: "):
            # the line above is the user's side of the same turn
            seq = next(t.seq for t in TRIP if line[len("Assistant: ") :].split(". ")[0] in t.agent_message)
            assert lines[i - 1][len("User: ") :].split(". ")[0] in TRIP[seq - 1].user_message
        if line.endswith("?"):
            assert i + 1 < len(lines) and lines[i + 1].startswith("Assistant: ")
    assert "Any tips?\nAssistant: Shojin ryori" in summary


async def test_the_demo_summary_pairs_no_sentence_with_another_turns_reply():
    turns = [
        turn(1, "I prefer green tea over coffee.", "Green tea it is."),
        turn(2, "How do I rebalance my portfolio?", "Sell what grew beyond its target share and buy what fell below."),
    ]
    summary = await LocalChatModel().summarize(turns, "", max_words=60)
    assert "User: I prefer green tea over coffee.\nAssistant: Sell" not in summary
    assert "User: How do I rebalance my portfolio?\nAssistant: Sell what grew" in summary


async def test_no_sentence_is_cut():
    summary = await LocalChatModel().summarize(TRIP, "", max_words=25)
    source = source_text(TRIP)
    assert "\u2026" not in summary
    for body in sentences_of(summary):
        for sentence in sentences(body):
            assert sentence.strip() in source


async def test_summary_is_extractive_and_in_original_order():
    summary = await LocalChatModel().summarize(TRIP, "", max_words=60)
    source = source_text(TRIP)
    positions = []
    for body in sentences_of(summary):
        assert body in source
        positions.append(source.index(body))
    assert positions == sorted(positions)


async def test_a_tight_budget_keeps_the_topic():
    summary = await LocalChatModel().summarize(TRIP, "", max_words=15)
    assert len(summary.split()) <= 15
    assert "Japan" in summary


async def test_previous_summary_is_kept_when_it_fits_and_trimmed_when_not():
    model = LocalChatModel()
    previous = "User: My name is Ana and I live in Lisbon."
    summary = await model.summarize(TRIP[4:], previous, max_words=60)
    assert summary.startswith(previous + "\n")
    assert "vegetarian" in summary

    long_previous = "\n".join(f"User: I visited museum number {i} in Lisbon with friends." for i in range(30))
    summary = await model.summarize(TRIP[4:], long_previous, max_words=50)
    assert len(summary.split()) <= 50
    assert "museum" in summary and "vegetarian" in summary


async def test_empty_input_gives_the_previous_summary_or_nothing():
    model = LocalChatModel()
    assert await model.summarize([], "", 50) == ""
    assert await model.summarize([], "User: I live in Lisbon.", 50) == "User: I live in Lisbon."
    assert await model.summarize([turn(1, "Hi!", "Hello!")], "", 50) == ""
    assert await model.summarize(TRIP, "", 0) == ""


async def test_summarize_session_covers_every_chunk_within_the_budget():
    chunks = [
        chunk(0, "User: I'm planning a trip to Japan in April with my sister.\nAssistant: Kyoto is lovely then."),
        chunk(1, "User: My budget is around 150 euros per night."),
        chunk(2, "The user asked about vegetarian food; the assistant suggested temple cuisine."),
    ]
    tail = [turn(7, "I also want to visit Osaka for a day.", "Osaka is a short train ride from Kyoto.")]
    summary = await LocalChatModel().summarize_session(chunks, tail, max_words=70)
    assert len(summary.split()) <= 70
    for expected in ("Japan", "150 euros", "temple cuisine", "Osaka"):
        assert expected in summary
    assert summary.index("Japan") < summary.index("150 euros") < summary.index("temple") < summary.index("Osaka")


async def test_summaries_are_deterministic():
    model = LocalChatModel()
    assert await model.summarize(TRIP, "", 40) == await model.summarize(TRIP, "", 40)
    chunks = [chunk(0, "User: I live in Lisbon."), chunk(1, "User: I love coffee.")]
    assert await model.summarize_session(chunks, TRIP, 40) == await model.summarize_session(chunks, TRIP, 40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(st.tuples(st.text(max_size=400), st.text(max_size=400)), min_size=0, max_size=6),
    previous=st.text(max_size=600),
    max_words=st.integers(min_value=0, max_value=120),
)
async def test_summaries_never_exceed_max_words(messages, previous, max_words):
    model = LocalChatModel()
    turns = [turn(i + 1, user, agent) for i, (user, agent) in enumerate(messages)]
    assert len((await model.summarize(turns, previous, max_words)).split()) <= max_words
    chunks = [chunk(0, previous)] if previous else []
    assert len((await model.summarize_session(chunks, turns, max_words)).split()) <= max_words


@pytest.mark.parametrize(
    ("function", "call"),
    [
        ("_summarize_turns", lambda model: model.summarize([turn(1, "I live in Lyon.")])),
        ("_summarize_session", lambda model: model.summarize_session([chunk(0, "Lyon.")], [])),
        ("extract_insights", lambda model: model.extract_insights([turn(1, "I live in Lyon.")])),
    ],
)
async def test_the_local_model_leaves_the_event_loop_free_while_it_works(monkeypatch, function, call):
    """A summary or an extraction runs off the event loop, as a remote model's call would wait on the network."""
    released = threading.Event()

    def blocking(*args):
        assert released.wait(5), "the event loop did not run while the local model worked"
        return [] if function == "extract_insights" else "text"

    monkeypatch.setattr(local_chat, function, blocking)

    async def release() -> None:
        released.set()

    await asyncio.gather(call(LocalChatModel()), release())
