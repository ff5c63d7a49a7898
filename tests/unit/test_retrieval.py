from memory_core.domain import MemoryKind, SearchHit
from memory_core.retrieval import RRF_K, fuse


def hit(item_id: str) -> SearchHit:
    return SearchHit(kind=MemoryKind.TURN, id=item_id, text=item_id, score=0.0)


def test_fusion_rewards_items_both_retrievers_found():
    text = [hit("a"), hit("b"), hit("c")]
    vector = [hit("c"), hit("d"), hit("a")]
    fused = fuse([text, vector], limit=4)
    assert [h.id for h in fused] == ["a", "c", "b", "d"]
    assert fused[0].score == round(1 / (RRF_K + 1) + 1 / (RRF_K + 3), 6)


def test_fusion_respects_the_limit_and_handles_empty_lists():
    assert fuse([[], []], limit=3) == []
    assert [h.id for h in fuse([[hit("x"), hit("y")], []], limit=1)] == ["x"]
