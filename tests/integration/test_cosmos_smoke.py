"""Smoke test of CosmosStore against the test-support Cosmos DB API server (the contract suite covers the rest)."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosResourceNotFoundError

from memory_core import session as rules
from memory_core.adapters import cosmos as cosmos_adapter
from memory_core.adapters.cosmos import CosmosStore, _from_sort_key, _sort_key, bm25_scores
from memory_core.domain import Insight, MemoryKind, SessionRecord, SessionStatus, SessionSummary, Turn, turn_doc_id
from memory_core.errors import EmbeddingDimensionMismatchError, UpstreamUnavailableError, UserForgettingError
from memory_core.session import TurnInput
from tests.support.cosmos_emulator import COSMOS_EMULATOR_KEY

pytestmark = pytest.mark.cosmos

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def make_store(
    endpoint: str, database: str, *, vector_search: bool = True, full_text_search: bool = False
) -> CosmosStore:
    return CosmosStore(
        endpoint,
        COSMOS_EMULATOR_KEY,
        database=database,
        interactions_container="interactions",
        summaries_container="session_summaries",
        insights_container="insights",
        vector_search=vector_search,
        full_text_search=full_text_search,  # FullTextScore is Azure-only; the server runs the BM25 fallback
        endpoint_discovery=False,  # plain http: the server advertises https locations
    )


def unit(*xs: float) -> list[float]:
    norm = math.sqrt(sum(x * x for x in xs))
    return [x / norm for x in xs]


def turn(user: str, session: str, seq: int, user_message: str, agent_message: str = "ok") -> Turn:
    return Turn(
        user_id=user,
        session_id=session,
        seq=seq,
        turn_id=f"t{seq}",
        user_message=user_message,
        agent_message=agent_message,
        timestamp=T0 + timedelta(minutes=seq),
    )


@pytest.fixture(params=[True, False], ids=["vectordistance", "python-cosine"])
async def store(cosmos_endpoint: str, request: pytest.FixtureRequest) -> AsyncIterator[CosmosStore]:
    store = make_store(cosmos_endpoint, f"smoke-{uuid.uuid4().hex[:8]}", vector_search=request.param)
    await store.open("fake-embedder", 3)
    yield store
    await store.close()


async def test_session_round_trip_and_missing_session(store: CosmosStore) -> None:
    record = SessionRecord(
        user_id="alice", session_id="s1", status=SessionStatus.ACTIVE, started_at=T0, last_activity=T0, turn_count=2
    )
    await store.put_session(record)
    assert await store.get_session("alice", "s1") == record
    assert await store.get_session("alice", "nope") is None
    assert await store.get_session("bob", "s1") is None
    await store.put_session(record.model_copy(update={"status": SessionStatus.IDLE}))
    assert [s.status for s in await store.list_sessions("alice")] == [SessionStatus.IDLE]
    assert await store.list_sessions("alice", status=SessionStatus.ACTIVE) == []


async def test_turns_in_seq_order_after_seq_and_limit(store: CosmosStore) -> None:
    turns = [turn("alice", "s1", seq, f"message {seq}") for seq in (3, 1, 2, 4)]
    await store.put_turns(turns)
    await store.put_turns([turn("bob", "s1", 1, "bob's turn")])
    assert [t.seq for t in await store.get_turns("alice", "s1")] == [1, 2, 3, 4]
    assert [t.seq for t in await store.get_turns("alice", "s1", after_seq=2)] == [3, 4]
    assert [t.seq for t in await store.get_turns("alice", "s1", after_seq=1, limit=2)] == [2, 3]
    assert (await store.get_turns("alice", "s1"))[0] == turns[1]


async def test_vector_search_ranks_by_cosine_and_keeps_embeddings_on_rewrite(store: CosmosStore) -> None:
    turns = [turn("alice", "s1", 1, "I live in Lisbon"), turn("alice", "s1", 2, "I like green tea")]
    await store.put_turns(turns, [unit(1, 0, 0), unit(0, 1, 0)])
    await store.put_turns([turn("bob", "s1", 1, "bob lives in Lisbon too")], [unit(1, 0, 0)])
    await store.put_turns(turns[:1])  # rewrite without an embedding: the stored one stays
    summary = SessionSummary(
        user_id="alice", session_id="s1", summary="Alice, Lisbon", turn_count=2, first_seq=1, last_seq=2, created_at=T0
    )
    await store.put_summary(summary, unit(1, 0.2, 0))

    hits = await store.search_vector("alice", unit(1, 0.1, 0), [MemoryKind.TURN, MemoryKind.SUMMARY], limit=5)
    assert [h.id for h in hits] == [summary.id, turn_doc_id("alice", "s1", "t1"), turn_doc_id("alice", "s1", "t2")]
    assert hits[0].score == pytest.approx(sum(a * b for a, b in zip(unit(1, 0.1, 0), unit(1, 0.2, 0), strict=True)))
    assert hits[1].kind is MemoryKind.TURN and hits[1].seqs == (1,) and hits[1].session_id == "s1"
    assert hits[0].seqs == (1, 2) and hits[0].timestamp == T0
    only_turns = await store.search_vector("alice", unit(0, 1, 0), [MemoryKind.TURN], limit=1)
    assert [h.id for h in only_turns] == [turn_doc_id("alice", "s1", "t2")]
    with pytest.raises(EmbeddingDimensionMismatchError):
        await store.search_vector("alice", [1.0, 0.0], [MemoryKind.TURN], limit=1)


async def test_text_search_is_bm25_over_whole_words_and_skips_superseded(store: CosmosStore) -> None:
    await store.put_turns(
        [
            turn("alice", "s1", 1, "My cat is called Tom", "Nice cat"),
            turn("alice", "s1", 2, "I work on category theory"),
            turn("alice", "s1", 3, "The weather is nice"),
        ]
    )
    await store.put_turns([turn("bob", "s1", 1, "bob's cat")])
    old = Insight(
        id="ins-1",
        user_id="alice",
        key="pet",
        category="fact",
        text="Alice has a cat",
        source_session_id="s1",
        source_turns=(1,),
        status="superseded",
        valid_from=T0,
        created_at=T0,
        updated_at=T0,
    )
    new = old.model_copy(update={"id": "ins-2", "text": "Alice has a cat named Tom", "status": "active"})
    await store.put_insights([old, new])

    hits = await store.search_text("alice", "What is my CAT called?", list(MemoryKind), limit=10)
    assert {h.id for h in hits} == {turn_doc_id("alice", "s1", "t1"), "ins-2"}  # not "category", not bob's
    assert hits[0].id == turn_doc_id("alice", "s1", "t1")  # "cat" twice plus "called"
    assert all(h.score > 0 for h in hits) and hits[0].score > hits[1].score
    assert await store.search_text("alice", "the and of", list(MemoryKind), limit=10) == []
    assert [i.id for i in await store.get_insights("alice")] == ["ins-2"]
    assert {i.id for i in await store.get_insights("alice", include_superseded=True)} == {"ins-1", "ins-2"}


async def test_delete_user_removes_everything_of_that_user_only(store: CosmosStore) -> None:
    record = SessionRecord(
        user_id="alice", session_id="s1", status=SessionStatus.ACTIVE, started_at=T0, last_activity=T0
    )
    await store.put_session(record)
    await store.put_turns([turn("alice", "s1", 1, "hello"), turn("alice", "s1", 2, "again")])
    await store.put_turns([turn("bob", "s1", 1, "hello")])
    summary = SessionSummary(
        user_id="alice", session_id="s1", summary="hello", turn_count=2, first_seq=1, last_seq=2, created_at=T0
    )
    await store.put_summary(summary)

    export = await store.export_user("alice")
    assert export.sessions == [record] and [t.seq for t in export.turns] == [1, 2] and export.summaries == [summary]

    deleted = await store.delete_user("alice")
    assert (deleted.sessions, deleted.turns, deleted.summaries, deleted.chunks, deleted.insights) == (1, 2, 1, 0, 0)
    assert (await store.export_user("alice")).model_dump() == {
        "user_id": "alice",
        "sessions": [],
        "turns": [],
        "chunks": [],
        "summaries": [],
        "insights": [],
    }
    assert len(await store.get_turns("bob", "s1")) == 1


async def test_store_refuses_another_embedding_identity(cosmos_endpoint: str) -> None:
    database = f"identity-{uuid.uuid4().hex[:8]}"
    first = make_store(cosmos_endpoint, database)
    await first.open("model-a", 3)
    await first.put_turns([turn("alice", "s1", 1, "hello")], [unit(1, 0, 0)])
    await first.close()

    for model, dims in (("model-a", 4), ("model-b", 3)):
        other = make_store(cosmos_endpoint, database)
        with pytest.raises(EmbeddingDimensionMismatchError, match="model-a") as caught:
            await other.open(model, dims)
        assert model in str(caught.value) and str(dims) in str(caught.value)
        await other.close()

    no_embedder = make_store(cosmos_endpoint, database)
    await no_embedder.open(None, None)  # full-text only: opens fine over stored vectors
    assert len(await no_embedder.get_turns("alice", "s1")) == 1
    await no_embedder.close()


def test_bm25_prefers_rarer_terms_and_shorter_documents() -> None:
    docs = ["cat cat dog", "dog dog dog dog", "cat"]
    scores = bm25_scores(docs, ["cat"], doc_count=3, avg_len=8 / 3)
    assert scores[1] == 0 and scores[2] > scores[0] > 0


# -- the test server's transactional batch ------------------------------------------------------------------------


@pytest.fixture
async def container(cosmos_endpoint: str) -> AsyncIterator[ContainerProxy]:
    """A fresh container partitioned by /user_id, straight from the SDK (no adapter in between)."""
    async with CosmosClient(cosmos_endpoint, COSMOS_EMULATOR_KEY, enable_endpoint_discovery=False) as client:
        database = await client.create_database_if_not_exists(f"batch-{uuid.uuid4().hex[:8]}")
        yield await database.create_container_if_not_exists("docs", partition_key=PartitionKey(path="/user_id"))


async def _absent(container: ContainerProxy, item_id: str, user_id: str) -> bool:
    try:
        await container.read_item(item_id, partition_key=user_id)
    except CosmosResourceNotFoundError:
        return True
    return False


async def test_a_failed_batch_applies_none_of_its_operations(container: ContainerProxy) -> None:
    # Azure: all or nothing within the partition; the failing operation has its status, every other one 424.
    await container.create_item({"id": "record", "user_id": "alice", "n": 1})
    stale = (await container.read_item("record", partition_key="alice"))["_etag"]
    await container.replace_item("record", {"id": "record", "user_id": "alice", "n": 2})  # a new ETag
    operations = [
        ("create", ({"id": "turn-1", "user_id": "alice"},)),
        ("replace", ("record", {"id": "record", "user_id": "alice", "n": 3}), {"if_match_etag": stale}),
        ("upsert", ({"id": "turn-2", "user_id": "alice"},)),
    ]
    with pytest.raises(CosmosBatchOperationError) as failed:
        await container.execute_item_batch(operations, partition_key="alice")
    assert (failed.value.error_index, failed.value.status_code) == (1, 412)
    assert [int(op["statusCode"]) for op in failed.value.operation_responses] == [424, 412, 424]
    assert await _absent(container, "turn-1", "alice")  # created first, rolled back
    assert await _absent(container, "turn-2", "alice")
    assert (await container.read_item("record", partition_key="alice"))["n"] == 2


async def test_a_batch_whose_create_conflicts_leaves_the_other_operations_unapplied(container: ContainerProxy) -> None:
    await container.create_item({"id": "turn-1", "user_id": "alice", "text": "first"})
    await container.create_item({"id": "record", "user_id": "alice", "n": 1})
    etag = (await container.read_item("record", partition_key="alice"))["_etag"]
    operations = [
        ("upsert", ({"id": "turn-0", "user_id": "alice"},)),
        ("create", ({"id": "turn-1", "user_id": "alice", "text": "second"},)),
        ("replace", ("record", {"id": "record", "user_id": "alice", "n": 2}), {"if_match_etag": etag}),
    ]
    with pytest.raises(CosmosBatchOperationError) as failed:
        await container.execute_item_batch(operations, partition_key="alice")
    assert [int(op["statusCode"]) for op in failed.value.operation_responses] == [424, 409, 424]
    assert await _absent(container, "turn-0", "alice")
    assert (await container.read_item("turn-1", partition_key="alice"))["text"] == "first"
    record = await container.read_item("record", partition_key="alice")
    assert record["n"] == 1 and record["_etag"] == etag  # untouched: the ETag still matches


async def test_a_successful_batch_applies_every_operation(container: ContainerProxy) -> None:
    await container.create_item({"id": "record", "user_id": "alice", "n": 1})
    etag = (await container.read_item("record", partition_key="alice"))["_etag"]
    results = await container.execute_item_batch(
        [
            ("create", ({"id": "turn-1", "user_id": "alice"},)),
            ("replace", ("record", {"id": "record", "user_id": "alice", "n": 2}), {"if_match_etag": etag}),
        ],
        partition_key="alice",
    )
    assert [int(r["statusCode"]) for r in results] == [201, 200]
    assert not await _absent(container, "turn-1", "alice")
    assert (await container.read_item("record", partition_key="alice"))["n"] == 2


# -- the adapter's optimistic concurrency -------------------------------------------------------------------------


@pytest.fixture
async def plain_store(cosmos_endpoint: str) -> AsyncIterator[CosmosStore]:
    store = make_store(cosmos_endpoint, f"occ-{uuid.uuid4().hex[:8]}", vector_search=False)
    await store.open(None, None)
    yield store
    await store.close()


async def test_an_append_that_loses_the_etag_leaves_no_turn_behind_and_retries(
    plain_store: CosmosStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await plain_store.create_session(rules.new_record("alice", "s1", T0))
    read = plain_store._read_session
    batches: list[int | None] = []

    async def read_then_interfere(user_id: str, session_id: str) -> tuple[SessionRecord, str] | None:
        current = await read(user_id, session_id)
        if not batches:  # another worker changes the record between this read and the batch
            await plain_store.put_session(current[0].model_copy(update={"cumulative_summary": "changed"}))
        return current

    append_batch = plain_store._append_batch

    async def record_batch(turn: Turn, record: SessionRecord, etag: str) -> int | None:
        batches.append(await append_batch(turn, record, etag))
        return batches[-1]

    monkeypatch.setattr(plain_store, "_read_session", read_then_interfere)
    monkeypatch.setattr(plain_store, "_append_batch", record_batch)
    outcome = await plain_store.append_turn(
        "alice", "s1", TurnInput(turn_id="t1", user_message="hi", agent_message="ok"), T0
    )
    assert batches == [412, None]
    assert outcome.turn.seq == 1 and not outcome.duplicate
    record = await plain_store.get_session("alice", "s1")
    assert record is not None and record.turn_count == 1 and record.cumulative_summary == "changed"
    assert [t.turn_id for t in await plain_store.get_turns("alice", "s1")] == ["t1"]


async def test_a_turn_costs_one_point_read_and_one_batch(
    plain_store: CosmosStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a store costs on Azure: the session record's read and the batch, nothing more (no forget check of its own).
    await plain_store.create_session(rules.new_record("alice", "s1", T0))
    container = plain_store._container("interactions")
    calls: list[str] = []
    for name in ("read_item", "query_items", "execute_item_batch", "create_item", "replace_item", "delete_item"):
        method = getattr(container, name)

        def counted(*args: object, _method=method, _name=name, **kwargs: object) -> object:
            calls.append(_name)
            return _method(*args, **kwargs)

        monkeypatch.setattr(container, name, counted)
    monkeypatch.setattr(plain_store, "_container", lambda name: container)
    await plain_store.append_turn("alice", "s1", TurnInput(turn_id="t1", user_message="hi", agent_message="ok"), T0)
    assert calls == ["read_item", "execute_item_batch"]


async def test_a_forget_that_flags_the_record_between_read_and_batch_refuses_the_turn(
    plain_store: CosmosStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await plain_store.create_session(rules.new_record("alice", "s1", T0))
    read = plain_store._read_session
    reads = 0

    async def read_then_forget(user_id: str, session_id: str) -> object:
        nonlocal reads
        reads += 1
        current = await read(user_id, session_id)
        if reads == 1:  # the forget begins between this append's read and its batch
            monkeypatch.setattr(plain_store, "_read_session", read)
            await plain_store.begin_forget("alice", T0)
            monkeypatch.setattr(plain_store, "_read_session", read_then_forget)
        return current

    monkeypatch.setattr(plain_store, "_read_session", read_then_forget)
    with pytest.raises(UserForgettingError):
        await plain_store.append_turn("alice", "s1", TurnInput(turn_id="t1", user_message="hi", agent_message="ok"), T0)
    assert reads == 2  # the batch failed on the flagged record's ETag, and the second read saw the flag
    assert await plain_store.get_turns("alice", "s1") == []
    record = await plain_store.get_session("alice", "s1")
    assert record is not None and record.turn_count == 0


async def test_update_gives_up_after_too_many_conflicts(
    plain_store: CosmosStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await plain_store.create_session(rules.new_record("alice", "s1", T0))
    attempts = 0

    async def always_stale(record: SessionRecord, etag: str, *, forgetting: bool = False) -> bool:
        nonlocal attempts
        attempts += 1
        return False

    monkeypatch.setattr(plain_store, "_replace_session", always_stale)
    monkeypatch.setattr(cosmos_adapter, "_CONFLICT_PAUSE_MAX_SECONDS", 0.0)
    with pytest.raises(UpstreamUnavailableError):
        await plain_store.update_session("alice", "s1", lambda r: rules.end(r, T0))
    assert attempts == cosmos_adapter._MAX_WRITE_CONFLICTS


async def test_concurrent_cleanup_claims_have_one_winner(cosmos_endpoint: str) -> None:
    database = f"claim-{uuid.uuid4().hex[:8]}"
    stores = [make_store(cosmos_endpoint, database, vector_search=False) for _ in range(3)]
    for store in stores:
        await store.open(None, None)
    try:
        for now in (T0, T0 + timedelta(minutes=5)):  # the first claim creates the document, the next replaces it
            claims = await asyncio.gather(*(s.claim_cleanup(now, 60) for s in stores for _ in range(4)))
            assert claims.count(True) == 1
    finally:
        for store in stores:
            await store.close()


def test_sort_keys_have_a_four_digit_year_and_keep_time_order() -> None:
    times = [datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(1000, 1, 1, tzinfo=UTC), T0]
    keys = [_sort_key(t) for t in times]
    assert keys[0] == "0999-12-31T23:59:59.000000Z"
    assert len({len(k) for k in keys}) == 1 and keys == sorted(keys)
    assert [_from_sort_key(k) for k in keys] == times
    assert _sort_key(datetime(2025, 1, 1, 12)) == "2025-01-01T12:00:00.000000Z"  # naive is UTC


def test_every_field_of_a_domain_model_has_a_place_in_its_document() -> None:
    # A field the document lacks would be dropped on every write (to_domain_dict keeps only the document's fields).
    from memory_core.adapters.cosmos import _KIND_TYPES

    for document in _KIND_TYPES:
        missing = set(document.domain.model_fields) - set(document.model_fields)
        assert not missing, f"{document.__name__} does not store {sorted(missing)}"


def test_full_text_queries_write_top_and_terms_as_checked_literals() -> None:
    # Cosmos DB refuses parameters in FullTextScore and a parameterised TOP in ORDER BY RANK queries; the test
    # server cannot run FullTextScore, so the exact text the adapter sends is what is checked here.
    store = make_store("https://account.documents.azure.com:443/", "db", full_text_search=True)
    base, params = cosmos_adapter._search_where(None)
    sql, term_params = store._text_candidates_sql(base, ["lisbon", "o'neil", "café"], 7)
    assert sql == (
        "SELECT TOP 7 c.id, c.type, c.text, c.session_id, c.first_seq, c.last_seq, c.ts FROM c "
        "WHERE c.user_id = @user_id AND ARRAY_CONTAINS(@types, c.type) AND c.active = true "
        'AND (FullTextContainsAny(c.text, "lisbon", "o\'neil", "café")) '
        'ORDER BY RANK FullTextScore(c.text, "lisbon", "o\'neil", "café")'
    )
    assert term_params == {} and params == {}
    # Where turns are searched, their date words are a second full-text path, fused with the text by RRF.
    dated, _ = store._text_candidates_sql(base, ["may", "2023"], 7, dated=True)
    assert dated == (
        "SELECT TOP 7 c.id, c.type, c.text, c.session_id, c.first_seq, c.last_seq, c.ts, c.when_text FROM c "
        "WHERE c.user_id = @user_id AND ARRAY_CONTAINS(@types, c.type) AND c.active = true "
        'AND (FullTextContainsAny(c.text, "may", "2023") OR FullTextContainsAny(c.when_text, "may", "2023")) '
        'ORDER BY RANK RRF(FullTextScore(c.text, "may", "2023"), FullTextScore(c.when_text, "may", "2023"))'
    )
    for bad in ['lisbon" OR 1=1', "two words", "back\\slash", ""]:
        with pytest.raises(ValueError):
            cosmos_adapter._term_literal(bad)
    for bad_top in [0, -1, True, 2.5, "5"]:
        with pytest.raises(ValueError):
            cosmos_adapter._top(bad_top)  # type: ignore[arg-type]


class _PolicyContainer:
    """A container whose properties hold a full-text policy: what the SDK's ``read()`` returns on Azure."""

    def __init__(self, paths: list[str]) -> None:
        self.properties = {"fullTextPolicy": {"fullTextPaths": [{"path": p, "language": "en-US"} for p in paths]}}

    async def read(self) -> dict[str, object]:
        return self.properties


@pytest.mark.parametrize(("paths", "dated"), [(["/text", "/when_text"], True), (["/text"], False)])
async def test_turns_are_searched_by_date_only_where_the_container_indexes_it(paths: list[str], dated: bool) -> None:
    # A container made by an earlier version has /text alone: its turns keep the text-only full-text query.
    store = make_store("https://account.documents.azure.com:443/", "db", full_text_search=True)
    store._containers = {name: _PolicyContainer(paths) for name in ("interactions", "summaries", "insights")}  # type: ignore[misc]
    await store._check_full_text_paths()
    sent: list[str] = []

    async def query(container: object, sql: str, user_id: str, params: object = None) -> list[object]:
        sent.append(sql)
        return []

    store._query = query  # type: ignore[method-assign]
    await store.search_text("alice", "garden 8 May 2023", [MemoryKind.TURN], 5)
    (candidates,) = [sql for sql in sent if "FullTextContainsAny" in sql]
    assert ("c.when_text" in candidates) is dated
    assert ("RRF(" in candidates) is dated
