import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_core.adapters.local_chat import MAX_INSIGHT_CHARS, LocalChatModel, extract_insights
from memory_core.domain import Chunk, Turn
from memory_core.ports import ChatModel

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
# Insights: one table per pattern family, positives and negatives
# ---------------------------------------------------------------------------------------------------------------

POSITIVE = [
    # name
    ("My name is Ana.", "name", "identity", "The user's name is Ana."),
    ("my name is ana silva", "name", "identity", "The user's name is Ana."),
    ("Hi, I'm Ana.", "name", "identity", "The user's name is Ana."),
    ("Hello! My name's Sam Carter.", "name", "identity", "The user's name is Sam Carter."),
    ("You can call me Sam.", "name", "identity", "The user's name is Sam."),
    ("I'm Sam from Contoso.", "name", "identity", "The user's name is Sam."),
    ("I am Ana", "name", "identity", "The user's name is Ana."),
    # identity
    ("I'm Portuguese.", "nationality", "identity", "The user is Portuguese."),
    ("I'm 34 years old.", "age", "identity", "The user is 34 years old."),
    ("I was born in 1990.", "birth_year", "identity", "The user was born in 1990."),
    # work
    ("I work at Contoso.", "employer", "work", "The user works at Contoso."),
    ("i work for microsoft", "employer", "work", "The user works for microsoft."),
    ("I've been working at Contoso since 2019.", "employer", "work", "The user works at Contoso."),
    ("I work as a nurse.", "occupation", "work", "The user works as a nurse."),
    ("I'm currently working as a barista.", "occupation", "work", "The user works as a barista."),
    ("I'm a teacher.", "occupation", "work", "The user is a teacher."),
    (
        "Well, I'm a software engineer at Microsoft.",
        "occupation",
        "work",
        "The user is a software engineer at Microsoft.",
    ),
    ("I am an engineer and I love it.", "occupation", "work", "The user is an engineer."),
    ("I'm retired now.", "occupation", "work", "The user is retired."),
    # place
    ("I live in Lisbon.", "location", "location", "The user lives in Lisbon."),
    ("I live in Lisbon, Portugal.", "location", "location", "The user lives in Lisbon."),
    (
        "I currently live in a small town near Porto.",
        "location",
        "location",
        "The user lives in a small town near Porto.",
    ),
    ("I'm living in Berlin these days.", "location", "location", "The user lives in Berlin."),
    ("I've lived in Lisbon for 10 years.", "location", "location", "The user has lived in Lisbon for 10 years."),
    ("I moved to Berlin last year.", "location", "location", "The user moved to Berlin last year."),
    ("Last year I moved to Berlin.", "location", "location", "The user moved to Berlin last year."),
    ("Oh and btw, I just moved to Lisbon!", "location", "location", "The user moved to Lisbon."),
    ("I'm from Brazil.", "origin", "location", "The user is from Brazil."),
    ("I'm originally from Brazil.", "origin", "location", "The user is from Brazil."),
    ("I come from a small village in Greece.", "origin", "location", "The user is from a small village in Greece."),
    ("I grew up in Porto.", "hometown", "location", "The user grew up in Porto."),
    # preferences
    ("I like hiking.", "preference:hiking", "preference", "The user likes hiking."),
    ("I love coffee.", "preference:coffee", "preference", "The user loves coffee."),
    ("I really enjoy jazz.", "preference:jazz", "preference", "The user enjoys jazz."),
    ("I prefer tea over coffee.", "preference:tea", "preference", "The user prefers tea over coffee."),
    ("I hate mornings.", "preference:morning", "preference", "The user hates mornings."),
    ("I dislike crowded places.", "preference:crowded-place", "preference", "The user dislikes crowded places."),
    ("I like dogs.", "preference:dog", "preference", "The user likes dogs."),
    ("I love my job.", "preference:job", "preference", "The user loves their job."),
    ("I like to travel.", "preference:travel", "preference", "The user likes to travel."),
    ("I LOVE SUSHI", "preference:sushi", "preference", "The user loves SUSHI."),
    (
        "I enjoy cooking, reading and gardening.",
        "preference:cooking-reading-gardening",
        "preference",
        "The user enjoys cooking, reading and gardening.",
    ),
    ("I'm a big fan of jazz.", "preference:jazz", "preference", "The user is a big fan of jazz."),
    ("I'm into rock climbing.", "preference:rock-climbing", "preference", "The user is into rock climbing."),
    ("I can't stand cilantro.", "preference:cilantro", "preference", "The user can't stand cilantro."),
    ("My favorite color is blue.", "preference:favorite-color", "preference", "The user's favorite color is blue."),
    ("I'm vegetarian.", "diet", "preference", "The user is vegetarian."),
    ("I'm allergic to peanuts.", "allergy:peanut", "health", "The user is allergic to peanuts."),
    # goals
    ("My goal is to run a marathon.", "goal:run-marathon", "goal", "The user's goal is to run a marathon."),
    (
        "My main goal this year is to learn Spanish.",
        "goal:learn-spanish",
        "goal",
        "The user's main goal this year is to learn Spanish.",
    ),
    ("I want to retire at 65.", "goal:retire-65", "goal", "The user wants to retire at 65."),
    ("I want to be a doctor.", "goal:doctor", "goal", "The user wants to be a doctor."),
    (
        "I'd like to learn how to cook Thai food.",
        "goal:learn-cook-thai-food",
        "goal",
        "The user would like to learn how to cook Thai food.",
    ),
    ("I would love to visit Japan.", "goal:visit-japan", "goal", "The user would love to visit Japan."),
    ("I hope to write a book.", "goal:write-book", "goal", "The user hopes to write a book."),
    ("I'm hoping to get promoted this year.", "goal:promoted", "goal", "The user hopes to get promoted this year."),
    ("My dream is to open a bakery.", "goal:open-bakery", "goal", "The user's dream is to open a bakery."),
    # plans
    (
        "I'm going to visit my mom next week.",
        "plan:visit-mom",
        "plan",
        "The user is going to visit their mom next week.",
    ),
    (
        "Next week I'm going to visit my mom.",
        "plan:visit-mom",
        "plan",
        "The user is going to visit their mom next week.",
    ),
    ("I plan to buy a house.", "plan:buy-house", "plan", "The user plans to buy a house."),
    (
        "I'm planning to move to Canada in two years.",
        "plan:move-canada",
        "plan",
        "The user plans to move to Canada in two years.",
    ),
    (
        "I will start my new job on Monday.",
        "plan:start-new-job",
        "plan",
        "The user will start their new job on Monday.",
    ),
    ("I'll be in Paris next week.", "plan:paris", "plan", "The user will be in Paris next week."),
    ("Next week I fly to Rome.", "plan:fly-rome", "plan", "The user flies to Rome next week."),
    ("Tomorrow I'm flying to Tokyo!", "plan:flying-tokyo", "plan", "The user is flying to Tokyo tomorrow."),
    ("Tomorrow I have a job interview.", "plan:job-interview", "plan", "The user has a job interview tomorrow."),
    ("I'm moving to Madrid next year.", "plan:move-madrid", "plan", "The user is moving to Madrid next year."),
    # family and pets
    ("I have a dog named Rex.", "pet:dog:rex", "pet", "The user has a dog named Rex."),
    ("I've got two cats.", "pet:cat", "pet", "The user has two cats."),
    ("I have two kids.", "family:children", "family", "The user has two kids."),
    ("I have a sister who lives in Paris.", "family:sister", "family", "The user has a sister."),
    ("My daughter's name is Mia.", "family:daughter:mia", "family", "The user has a daughter named Mia."),
    ("I'm married.", "marital_status", "family", "The user is married."),
]


@pytest.mark.parametrize(("message", "key", "category", "text"), POSITIVE)
def test_first_person_statements_become_third_person_insights(message, key, category, text):
    found = facts(message)
    assert (key, category, text) in found, found


NEGATIVE = [
    # questions
    "Do I like coffee?",
    "Should I move to Berlin?",
    "I love coffee, do you?",
    "What's my name?",
    # negations
    "I don't like coffee.",
    "I do not live in Paris.",
    "I never liked coffee.",
    "I'm not a teacher.",
    "I don't want to move to Paris.",
    "I'm not going to move.",
    "I no longer work at Contoso.",
    "I used to live in Madrid.",
    # hypotheticals, hedges, jokes
    "If I lived in Paris, I would love croissants.",
    "I would live in Paris if I could.",
    "I will move to Paris if I get the job.",
    "When I retire I want to move to Portugal.",
    "Imagine I'm a pilot.",
    "Let's pretend I'm a pilot.",
    "I'm a pilot in my dreams.",
    "I think I like coffee.",
    "Maybe I'll move to Berlin.",
    "I might move to Berlin.",
    "I love coffee, just kidding.",
    "I'd love a coffee.",
    # someone else
    "My friend likes coffee.",
    "My wife works at Google.",
    "My brother lives in Paris.",
    "She is a doctor.",
    "My boss wants to retire.",
    "He said I'm a great cook.",
    "We moved to Berlin.",
    "My friend's name is Bob.",
    # pronouns and the assistant
    "I love it!",
    "I love you.",
    "I like your idea.",
    "Thanks, I love that suggestion.",
    "I like it here.",
    "I hate when people are late.",
    "I want you to remember that.",
    # conversational moves, not facts
    "I want to ask you something.",
    "I'll let you know.",
    "I'll think about it.",
    "I'll have the salad.",
    "I'm going to be honest.",
    "I want to know more about this.",
    # not a name, not a job, not a place
    "I'm fine, thanks.",
    "I'm Going home.",
    "I'm sorry.",
    "I'm a morning person.",
    "I'm a really good cook.",
    "I'm an idiot.",
    "I'm a fan of yours.",
    "I'm 5 minutes away.",
    "call me later",
    "My name is not important.",
    "I work at night.",
    "I live in fear.",
    "I have a cat allergy.",
    # greetings
    "Hi!",
    "Thanks so much, bye!",
]


@pytest.mark.parametrize("message", NEGATIVE)
def test_questions_negations_hypotheticals_and_others_give_no_insight(message):
    assert facts(message) == []


def test_like_and_hate_of_the_same_thing_share_a_key():
    found = extract_insights([turn(1, "I love coffee."), turn(2, "Actually I hate coffee now.")])
    assert [(c.key, c.text, c.source_turns) for c in found] == [
        ("preference:coffee", "The user loves coffee.", [1]),
        ("preference:coffee", "The user hates coffee.", [2]),
    ]
    assert facts("I like dogs.")[0][0] == facts("I dislike my dog.")[0][0] == "preference:dog"


def test_one_sentence_can_state_several_facts():
    assert facts("My name is Ana and I live in Lisbon but I work at Contoso as a data engineer.") == [
        ("name", "identity", "The user's name is Ana."),
        ("location", "location", "The user lives in Lisbon."),
        ("employer", "work", "The user works at Contoso."),
        ("occupation", "work", "The user works as a data engineer."),
    ]
    assert facts("I have a cat called Luna and a dog named Max.") == [
        ("pet:cat:luna", "pet", "The user has a cat named Luna."),
        ("pet:dog:max", "pet", "The user has a dog named Max."),
    ]
    assert facts("I like coffee but I hate tea.") == [
        ("preference:coffee", "preference", "The user likes coffee."),
        ("preference:tea", "preference", "The user hates tea."),
    ]


def test_sentences_are_split_by_punctuation():
    assert facts("I'm Ana! I live in Lisbon. Do you like it? I love hiking...") == [
        ("name", "identity", "The user's name is Ana."),
        ("location", "location", "The user lives in Lisbon."),
        ("preference:hiking", "preference", "The user loves hiking."),
    ]


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ("I love hiking with my dog and my kids.", "The user loves hiking with their dog and their kids."),
        ("I want to spend more time with my parents.", "The user wants to spend more time with their parents."),
        ("I want to teach myself piano.", "The user wants to teach themselves piano."),
        ("I plan to visit our family in Brazil.", "The user plans to visit their family in Brazil."),
        ("I want to take my wife to Rome.", "The user wants to take their wife to Rome."),
        ("I like the US.", "The user likes the US."),
    ],
)
def test_objects_are_restated_in_the_third_person(message, text):
    assert [f[2] for f in facts(message)] == [text]


def test_typographic_apostrophes_and_case_are_handled():
    assert facts("I\u2019m Ana and I\u2019ve lived in Porto for years.") == [
        ("name", "identity", "The user's name is Ana."),
        ("location", "location", "The user has lived in Porto for years."),
    ]
    assert facts("i LIVE IN lisbon") == [("location", "location", "The user lives in lisbon.")]


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
    words = set(long_object.split())
    assert all(word in words for word in candidate.text[len("The user loves ") : -1].split())
    assert len(candidate.key) <= 200


async def test_extract_insights_is_deterministic():
    model = LocalChatModel()
    turns = [turn(i + 1, message) for i, (message, *_rest) in enumerate(POSITIVE)]
    first = await model.extract_insights(turns)
    second = await model.extract_insights(turns)
    assert first == second
    assert len(first) > 50


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
    for filler in ("Hi!", "Great, thanks!", "Thanks so much, bye!", "You're welcome", "Goodbye", "Any tips?"):
        assert filler not in summary
    assert "?" not in summary
    assert len(summary.split()) <= 80


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
