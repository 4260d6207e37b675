"""Memos kept within a size (compiler/memo.py)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from tilesim.compiler.memo import SizedMemo, drop_oldest


def test_drop_oldest_drops_the_first_entries_until_the_rest_fit_and_keeps_the_newest():
    kept = {"a": 5, "b": 3, "c": 4}
    drop_oldest(kept, lambda v: v, 7)
    assert kept == {"b": 3, "c": 4}
    drop_oldest(kept, lambda v: v, 1)
    assert kept == {"c": 4}                  # the newest stays, even too large
    kept = {"a": 1, "b": 1, "c": 1}
    drop_oldest(kept, lambda v: v, 10, max_len=2)
    assert kept == {"b": 1, "c": 1}


def test_a_sized_memo_trims_its_least_recently_used():
    memo: SizedMemo[str, list[int]] = SizedMemo(len)
    memo.put("a", [1, 2])
    memo.put("b", [1])
    memo.put("c", [1, 2, 3])
    assert memo.get("a") == [1, 2]           # now the most recently used
    assert memo.get("x") is None
    memo.trim(5)
    assert list(memo.entries) == ["c", "a"] and memo.total == 5
    grown = memo.get("c")
    assert grown is not None
    grown.extend([4, 5])                     # an entry that grew is put again
    memo.put("c", grown)
    assert memo.total == 7
    memo.trim(1)
    assert list(memo.entries) == ["c"] and memo.total == 5 and len(memo) == 1
    memo.clear()
    assert len(memo) == 0 and memo.total == 0 and not memo.sizes


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "get", "trim"]), st.integers(0, 6), st.integers(0, 9)),
                max_size=40))
def test_a_sized_memo_holds_what_drop_oldest_on_a_dict_would(steps):
    # the running total is the sum drop_oldest takes each time: the same entries, in the same order, are kept
    memo: SizedMemo[int, int] = SizedMemo(lambda v: v)
    plain: dict[int, int] = {}
    for op, key, value in steps:
        if op == "put":
            memo.put(key, value)
            plain.pop(key, None)
            plain[key] = value
        elif op == "get":
            if memo.get(key) is not None:
                plain[key] = plain.pop(key)
        else:
            memo.trim(value)
            drop_oldest(plain, lambda v: v, value)
        assert list(memo.entries.items()) == list(plain.items())
        assert memo.total == sum(plain.values()) == sum(memo.sizes.values())
