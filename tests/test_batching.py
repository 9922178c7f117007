"""MicroBatcher: concurrent searches grouped into one ``search_queries``, answers unchanged.

A real tiny Retriever (tiny_cnn + LSTM over the 12 drawn dresses) behind a spy that counts
model calls; every answer is compared with ``Retriever.search`` called directly.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from _demo_data import tiny_model, write_tiny_fashioniq

from fashion_retrieval.serving.batching import BatcherClosed, MicroBatcher, batched

TEXTS = ("red solid dress", "blue striped dress", "is green", "is black instead of red")


class Spy:
    """A Retriever whose ``search_queries`` calls are counted (sizes kept)."""

    def __init__(self, retriever):
        self.retriever = retriever
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    def search_queries(self, queries):
        with self._lock:
            self.batch_sizes.append(len(queries))
        return self.retriever.search_queries(queries)

    def __getattr__(self, name):
        return getattr(self.retriever, name)


@dataclass(frozen=True)
class Call:
    image: str | None
    text: str | None
    k: object
    exclude: tuple[str, ...] = ()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from fashion_retrieval.data.fashioniq import load_fashioniq
    from fashion_retrieval.search.retriever import Retriever

    root = tmp_path_factory.mktemp("batching")
    catalogue = load_fashioniq(write_tiny_fashioniq(root / "fiq"), "val")
    garbage = root / "garbage.png"
    garbage.write_bytes(Path(catalogue.items[0].path).read_bytes()[::-1])
    return Retriever(tiny_model("tirg"), catalogue.items), catalogue, garbage


def _calls(catalogue, n: int) -> list[Call]:
    """Image-only, text-only and composed searches with varied k and exclusions."""
    items = catalogue.items
    out = []
    for i in range(n):
        item = items[i % len(items)]
        kind = i % 3
        k = 1 + i % 10
        exclude = (item.id,) if i % 2 else ()
        if kind == 0:
            out.append(Call(item.path, None, k, exclude))
        elif kind == 1:
            out.append(Call(None, TEXTS[i % len(TEXTS)], k, exclude + (items[(i + 1) % len(items)].id,)))
        else:
            out.append(Call(item.path, TEXTS[i % len(TEXTS)], k, exclude))
    return out


def _direct(retriever, call: Call):
    """``Retriever.search`` on its own: the hits, or the exception it raised."""
    try:
        return retriever.search(image=call.image, text=call.text, k=call.k, exclude_ids=call.exclude)
    except Exception as err:
        return err


def _together(batcher: MicroBatcher, calls: list[Call]) -> list:
    """Submit every call at once from its own thread; the hits or the exception of each."""
    start = threading.Barrier(len(calls))

    def one(call: Call):
        start.wait()
        try:
            return batcher.search(call.image, call.text, call.k, exclude_ids=call.exclude)
        except Exception as err:
            return err

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, calls))


def _same(got, want) -> bool:
    if isinstance(want, Exception):
        return type(got) is type(want) and str(got) == str(want)
    return [(h.id, h.rank) for h in got] == [(h.id, h.rank) for h in want] and all(
        abs(a.score - b.score) < 1e-4 for a, b in zip(got, want, strict=True))


def test_concurrent_searches_share_model_calls_and_answers_are_unchanged(tiny):
    retriever, catalogue, _ = tiny
    calls = _calls(catalogue, 24)
    spy = Spy(retriever)
    with MicroBatcher(spy, max_wait_ms=2000, max_batch=len(calls)) as batcher:
        got = _together(batcher, calls)
        stats = batcher.stats()
    assert spy.batch_sizes == [len(calls)]  # the batch filled before the wait ran out: one call
    assert (stats.searches, stats.batches, stats.largest, stats.retried_alone) == (24, 1, 24, 0)
    for call, hits in zip(calls, got, strict=True):
        assert len(hits) == call.k
        assert not {h.id for h in hits} & set(call.exclude)
        assert _same(hits, _direct(retriever, call)), call


def test_max_batch_splits_and_a_lone_search_goes_after_the_wait(tiny):
    retriever, catalogue, _ = tiny
    calls = _calls(catalogue, 10)
    spy = Spy(retriever)
    with MicroBatcher(spy, max_wait_ms=2000, max_batch=4) as batcher:
        got = _together(batcher, calls)
    assert sum(spy.batch_sizes) == 10 and max(spy.batch_sizes) == 4 and len(spy.batch_sizes) >= 3
    assert all(_same(h, _direct(retriever, c)) for c, h in zip(calls, got, strict=True))
    spy = Spy(retriever)
    with MicroBatcher(spy, max_wait_ms=1) as batcher:
        hits = batcher.search(text="red solid dress", k=3)
    assert spy.batch_sizes == [1] and _same(hits, retriever.search(text="red solid dress", k=3))


def test_a_bad_query_fails_in_its_callers_thread_before_any_batch(tiny):
    """A search's query is made by the caller (``search.query``'s rules): bad input raises
    there, with the Retriever's own error, and never reaches the batch of the good ones.
    (A batch that fails in the model is answered query by query: see the prepared test.)"""
    from fashion_retrieval.search.query import QueryError

    retriever, catalogue, garbage = tiny
    good = _calls(catalogue, 9)
    bad = [
        Call(str(garbage), "is red", 3),  # undecodable picture
        Call(None, None, 3),  # neither picture nor words
        Call(None, "red dress", 0),  # k out of range
        Call(None, "red dress", "3"),  # k not a number
        Call(None, 42, 3),  # text not a string
    ]
    calls = good[:4] + bad + good[4:]
    spy = Spy(retriever)
    with MicroBatcher(spy, max_wait_ms=60_000, max_batch=len(good)) as batcher:
        got = _together(batcher, calls)
        stats = batcher.stats()
    for call, answer in zip(calls, got, strict=True):
        want = _direct(retriever, call)
        assert isinstance(want, QueryError) == (call in bad), call
        assert _same(answer, want), (call, answer, want)
    assert spy.batch_sizes == [len(good)]  # the good ones filled one batch, without waiting
    assert (stats.searches, stats.batches, stats.retried_alone) == (len(good), 1, 0)


def test_close_answers_what_was_submitted_then_refuses(tiny):
    retriever, catalogue, _ = tiny
    batcher = MicroBatcher(retriever, max_wait_ms=60_000, max_batch=100)  # would wait a minute
    answers: list = []
    caller = threading.Thread(target=lambda: answers.append(batcher.search(text="blue striped dress", k=2)))
    caller.start()
    while batcher._thread is None:  # set, under the lock, just before the search is queued
        threading.Event().wait(0.005)
    with batcher._lock:  # the search is queued once the lock is free
        pass
    batcher.close()
    caller.join(timeout=30)
    assert not caller.is_alive() and _same(answers[0], retriever.search(text="blue striped dress", k=2))
    assert batcher._thread is not None and not batcher._thread.is_alive()
    with pytest.raises(BatcherClosed, match="closed"):
        batcher.search(text="red", k=1)
    batcher.close()  # twice is fine


def test_a_batcher_stands_in_for_its_retriever(tiny):
    retriever, _, _ = tiny
    models = batched({"tirg": retriever})
    b = models["tirg"]
    try:
        assert isinstance(b, MicroBatcher) and batched(models)["tirg"] is b  # not wrapped twice
        assert b.items == retriever.items and len(b) == len(retriever) and b.model is retriever.model
        assert b.item(retriever.items[0].id) == retriever.items[0]
    finally:
        b.close()
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(retriever, max_batch=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        MicroBatcher(retriever, max_wait_ms=-1)


class PreparedOnly:
    """A Retriever answering prepared queries (``search_queries``), each with its own k."""

    def __init__(self):
        self.calls: list[int] = []

    def search_queries(self, queries):
        self.calls.append(len(queries))
        if any(q.k < 1 for q in queries):
            raise ValueError("k must be at least 1")
        return [[f"{q.text}#{r}" for r in range(q.k)] for q in queries]


@dataclass(frozen=True)
class Prepared:
    text: str
    k: int


def test_prepared_queries_are_batched_too_with_errors_isolated():
    fake = PreparedOnly()
    queries = [Prepared(f"q{i}", i % 4) for i in range(12)]  # k=0 ones are bad
    start = threading.Barrier(len(queries))

    def one(q):
        start.wait()
        try:
            return batcher.search_queries([q])[0]
        except ValueError as err:
            return str(err)

    with MicroBatcher(fake, max_wait_ms=2000, max_batch=len(queries)) as batcher, ThreadPoolExecutor(12) as pool:
        got = list(pool.map(one, queries))
    assert fake.calls[0] == 12 and sum(fake.calls[1:]) == 12  # one batch, then each alone
    for q, answer in zip(queries, got, strict=True):
        assert answer == ("k must be at least 1" if q.k < 1 else [f"{q.text}#{r}" for r in range(q.k)])


def test_threads_sets_torch_threads_for_the_model_calls_only_in_its_thread(tiny):
    import torch

    retriever, _, _ = tiny
    seen = []

    class Counting(Spy):
        def search_queries(self, queries):
            seen.append(torch.get_num_threads())
            return super().search_queries(queries)

    before = torch.get_num_threads()
    try:
        with MicroBatcher(Counting(retriever), max_wait_ms=1, threads=1) as batcher:
            hits = batcher.search(text="red solid dress", k=2)
        assert seen == [1] and _same(hits, retriever.search(text="red solid dress", k=2))
        assert torch.get_num_threads() == before  # this thread keeps its own number
    finally:
        torch.set_num_threads(before)  # threads started later inherit the batcher's: put it back
    with pytest.raises(ValueError, match="threads"):
        MicroBatcher(retriever, threads=0)
