from hypothesis import given
from hypothesis import strategies as st

from pipeline.acks import OrderedAcks


def test_a_held_record_blocks_the_acks_behind_it() -> None:
    acks: OrderedAcks[str] = OrderedAcks()
    for offset in range(5):
        acks.track(0, offset, f"r{offset}")
    for offset in (1, 2, 4):
        acks.done(0, offset)
    assert acks.pop_ready() == []
    acks.done(0, 0)
    assert acks.pop_ready() == ["r0", "r1", "r2"]
    acks.done(0, 3)
    assert acks.pop_ready() == ["r3", "r4"]
    assert len(acks) == 0


def test_partitions_are_independent_and_forget_drops_one() -> None:
    acks: OrderedAcks[str] = OrderedAcks()
    acks.track(0, 10, "a")
    acks.track(1, 7, "b")
    acks.track(1, 8, "c")
    acks.done(1, 7)
    assert acks.pop_ready() == ["b"]
    assert acks.oldest_pending() == {0: 10, 1: 8}
    acks.forget(0)
    acks.done(0, 10)  # a record of a revoked partition: ignored
    assert acks.pop_ready() == []
    assert acks.oldest_pending() == {1: 8}


@given(st.permutations(list(range(30))))
def test_acked_offsets_always_form_a_prefix(order: list[int]) -> None:
    acks: OrderedAcks[int] = OrderedAcks()
    for offset in range(30):
        acks.track(0, offset, offset)
    acked: list[int] = []
    for offset in order:
        acks.done(0, offset)
        acked.extend(acks.pop_ready())
        assert acked == list(range(len(acked)))
    assert acked == list(range(30))
