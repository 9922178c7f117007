"""Micro-batching: concurrent searches of one model go through it together.

A web front end runs each request in its own worker thread; each would call
``Retriever.search`` alone, and the model would run once per request, the threads queueing
on the Retriever's lock. :class:`MicroBatcher` sits in front of a Retriever: a call waits at
most ``max_wait_ms`` for other calls to arrive, then one background thread answers up to
``max_batch`` of them with a single ``Retriever.search_queries`` (one model pass per kind of
query: image, text, composed) and hands each caller its own hits.

The batcher is a drop-in for the Retriever it wraps: ``search`` and ``search_queries`` take
the same arguments, any other attribute is the Retriever's. ``search`` makes its
:class:`~fashion_retrieval.search.query.Query` in the caller's thread (bad input fails
there, before any batch); each query keeps its own ``k`` and excluded ids. An error in a
batch fails only the query that caused it (its batch-mates are answered one by one, exactly
as ``Retriever.search_queries`` would). :meth:`MicroBatcher.close` answers what was already
submitted and stops the thread.

``threads`` sets torch's intra-op threads for the batcher's model calls. On a small CPU
server 1 is right: the web server's own threads need the other cores, and torch's idle
OpenMP workers spin-wait on them (measured on 2 cores: half the server's CPU per search).

With an exact (flat) index the answers equal ``Retriever.search``'s. With an approximate
one (HNSW) the batch asks the index for the batch's largest ``k``, which may find a few
more true neighbours than a call with a smaller ``k`` alone.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from fashion_retrieval.search.query import Query, make_query

DEFAULT_MAX_WAIT_MS = 3.0
DEFAULT_MAX_BATCH = 32


class BatcherClosed(RuntimeError):
    """A search was submitted to a batcher after :meth:`MicroBatcher.close`."""


@dataclass
class BatchStats:
    """What a batcher did: searches answered, model calls made and the largest batch."""

    searches: int = 0
    batches: int = 0
    largest: int = 0
    retried_alone: int = 0  # searches answered one by one after their batch failed

    @property
    def mean_batch(self) -> float:
        """Searches per batch (0 before the first)."""
        return self.searches / self.batches if self.batches else 0.0


@dataclass
class _Request:
    """One submitted query (it carries its own ``k`` and exclusions) and the future its
    caller waits on."""

    query: Query
    arrived: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


_STOP = object()


class MicroBatcher:
    """Groups concurrent searches on one Retriever into ``search_queries`` calls.

    ``max_wait_ms``: how long the first search of a batch waits for company (a few
    milliseconds; searches that queued while the previous batch ran go at once).
    ``max_batch``: the most searches in one model call. ``threads``: torch intra-op threads
    for the model calls (None: torch's setting). torch keeps the number per thread, but
    threads that first use torch after this one started inherit it too. Thread-safe; use as a
    context manager or call :meth:`close` to stop the background thread.
    """

    def __init__(
        self,
        retriever: Any,
        *,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        max_batch: int = DEFAULT_MAX_BATCH,
        threads: int | None = None,
        name: str | None = None,
    ) -> None:
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        self.threads = threads
        self.retriever = retriever
        self.max_wait = max_wait_ms / 1000.0
        self.max_batch = int(max_batch)
        self.name = name or f"batcher-{id(self):x}"
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._stats = BatchStats()

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes the batcher lacks: items, model, item(), search_batch...
        if name == "retriever":  # not yet set (e.g. during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.retriever, name)

    def __len__(self) -> int:
        return len(self.retriever)

    def __repr__(self) -> str:
        return f"MicroBatcher({self.retriever!r}, max_wait_ms={self.max_wait * 1000:g}, max_batch={self.max_batch})"

    # ------------------------------------------------------------------ callers

    def search(
        self, image: Any = None, text: str | None = None, k: int = 10, *, exclude_ids: Iterable[str] = ()
    ) -> list[Any]:
        """Top-``k`` hits for an image, a text or both, as ``Retriever.search`` gives them.

        Blocks until the batch holding this search has run; raises what
        ``Retriever.search`` would raise for this query alone.
        """
        return self.search_queries([make_query(image, text, k, exclude=exclude_ids)])[0]

    def search_queries(self, queries: Sequence[Query]) -> list[list[Any]]:
        """``Retriever.search_queries`` for prepared queries, batched with other callers' searches."""
        requests = [_Request(q) for q in queries]
        self._submit(requests)
        return [r.future.result() for r in requests]

    def _submit(self, requests: list[_Request]) -> None:
        """Queue requests for the thread (started on first use)."""
        with self._lock:
            if self._closed:
                raise BatcherClosed(f"{self.name} is closed; no more searches")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            for r in requests:
                self._queue.put(r)

    def stats(self) -> BatchStats:
        """A copy of the counters so far."""
        with self._lock:
            return BatchStats(**vars(self._stats))

    def close(self, timeout: float | None = 10.0) -> None:
        """Answer every search already submitted, then stop the thread (idempotent)."""
        with self._lock:
            if self._closed:
                thread = None
            else:
                self._closed = True
                thread = self._thread
                self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        """Collect a batch (up to max_batch, until the first one's deadline), answer it with
        one ``search_queries`` call, repeat."""
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            deadline = first.arrived + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is _STOP:  # answer what came before it, then stop
                    stop = True
                    break
                batch.append(nxt)
            try:
                answers = self.retriever.search_queries([r.query for r in batch])
            except Exception:  # some query is bad: each is answered alone, so only it fails
                answers = None
            self._settle(batch, answers)

    def _settle(self, batch: list[_Request], answers: list[list[Any]] | None) -> None:
        """Hand each caller its answer (None: each query answered alone, errors its own);
        never raises."""
        for i, r in enumerate(batch):
            try:
                r.future.set_result(answers[i] if answers is not None
                                    else self.retriever.search_queries([r.query])[0])
            except Exception as err:
                r.future.set_exception(err)
        with self._lock:
            s = self._stats
            s.searches += len(batch)
            s.batches += 1
            s.largest = max(s.largest, len(batch))
            s.retried_alone += len(batch) if answers is None else 0


def batched(
    models: dict[str, Any] | Sequence[tuple[str, Any]],
    *,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    max_batch: int = DEFAULT_MAX_BATCH,
    threads: int | None = None,
) -> dict[str, MicroBatcher]:
    """``{name: MicroBatcher(retriever)}`` for a dict of Retrievers (batchers kept as they are)."""
    pairs = models.items() if isinstance(models, dict) else models
    return {
        name: r if isinstance(r, MicroBatcher)
        else MicroBatcher(r, max_wait_ms=max_wait_ms, max_batch=max_batch, threads=threads, name=f"batcher-{name}")
        for name, r in pairs
    }
