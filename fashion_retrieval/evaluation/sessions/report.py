"""Session figures per model and history policy, the replays, the JSON and the README table.

Per model and policy: ``success`` (percent of sessions whose target was in the top k by
turn T, cumulative, T = 1..turns), ``mean_turns`` (a session that never finds it counts as
``turns + 1``) and ``target_rank`` (the median rank of the target item after each turn; a
session that has found it keeps the rank of that turn). Beside the models: ``random``, a
fresh random order every turn, under both policy names (it reads no words).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from fashion_retrieval.data.records import Item, RetrievalDataset
from fashion_retrieval.evaluation.embeddings import EmbeddingSource
from fashion_retrieval.evaluation.sessions.simulate import (
    Policy,
    PolicyRanker,
    RandomRanker,
    SessionLog,
    SessionSpec,
    draw_sessions,
    run_sessions,
)

POLICIES = ("last_turn", "history")
RANDOM = "random"
START, END = "<!-- sessions:start -->", "<!-- sessions:end -->"


def summarise(logs: Sequence[SessionLog], turns: int) -> dict[str, Any]:
    """``success`` (percent, cumulative by turn), ``mean_turns`` and ``target_rank`` (median
    after each turn) of played sessions."""
    found = [log.found_turn for log in logs]
    n = len(logs)
    success = [round(100 * sum(1 for f in found if f is not None and f <= t) / n, 2) for t in range(1, turns + 1)]
    mean_turns = float(np.mean([f if f is not None else turns + 1 for f in found]))
    ranks = []
    for t in range(turns):
        at = [log.turns[min(t, len(log.turns) - 1)].rank for log in logs if log.turns]  # carried forward
        ranks.append(float(np.median(at)) if at else None)
    return {"success": success, "mean_turns": round(mean_turns, 3), "target_rank": ranks}


def replay(log: SessionLog, items: Sequence[Item]) -> dict[str, Any]:
    """One session as ids and words: what the dashboard shows as pictures."""
    return {
        "target": items[log.session.target].id,
        "start": items[log.session.start].id,
        "turns": [{"picture": items[t.picture].id, "text": t.text, "hits": [items[j].id for j in t.hits],
                   "target_rank": t.rank, "success": t.success} for t in log.turns],
    }


class SessionReport:
    """Sessions drawn once for a gallery; models added one by one (each under every policy),
    the random baseline first; :meth:`to_dict` gives the JSON."""

    def __init__(self, dataset: RetrievalDataset, spec: SessionSpec | None = None) -> None:
        self.dataset, self.items = dataset, list(dataset.items)
        self.spec = spec or SessionSpec()
        self.sessions = draw_sessions(self.items, self.spec)
        self.models: dict[str, dict[str, Any]] = {}
        self.replays: dict[str, dict[str, Any]] = {}
        self._random: tuple[dict[str, Any], dict[str, Any]] | None = None

    def _play(self, ranker: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        logs = run_sessions(ranker, self.items, self.sessions, self.spec, self.dataset.protocol)
        return summarise(logs, self.spec.turns), replay(logs[0], self.items)

    def add(self, name: str, source: EmbeddingSource,
            policies: Sequence[str] | dict[str, Policy] = POLICIES) -> dict[str, Any]:
        """Play every session with the model behind ``source`` under each policy (names of
        ``models.history``, or ``{name: function}`` for a sweep); its figures."""
        named = policies if isinstance(policies, dict) else {p: p for p in policies}
        self.models[name], self.replays[name] = {}, {}
        for label, policy in named.items():
            self.models[name][label], self.replays[name][label] = self._play(PolicyRanker(source, self.items, policy))
        return self.models[name]

    def random_baseline(self, policies: Sequence[str] = POLICIES) -> dict[str, Any]:
        """The random ranking's figures (played once; the same under every policy name)."""
        if self._random is None:
            self._random = self._play(RandomRanker(len(self.items), seed=self.spec.seed))
        figures, shown = self._random
        self.models[RANDOM] = {p: dict(figures) for p in policies}
        self.replays[RANDOM] = {p: shown for p in policies}
        return self.models[RANDOM]

    def to_dict(self) -> dict[str, Any]:
        """The JSON: ``k``, ``turns``, ``start_distance``, ``sessions``, ``models``, ``replays``,
        ``paths`` (every id the replays name), and how the sessions were made."""
        spec = self.spec
        ids = {i for per in self.replays.values() for r in per.values()
               for i in (r["target"], r["start"], *(x for t in r["turns"] for x in (t["picture"], *t["hits"])))}
        by_id = {it.id: it.path for it in self.items}
        return {
            "k": spec.k, "turns": spec.turns, "start_distance": spec.start_distance,
            "sessions": len(self.sessions), "models": self.models, "replays": self.replays,
            "paths": {i: by_id[i] for i in sorted(ids)},
            "start_distances": {str(d): c for d, c in sorted(Counter(s.distance for s in self.sessions).items())},
            "asks": spec.asks, "phrasing": spec.phrasing, "seed": spec.seed, "gallery": len(self.items),
        }


def measure_sessions(sources: dict[str, EmbeddingSource], dataset: RetrievalDataset,
                     spec: SessionSpec | None = None,
                     policies: Sequence[str] | dict[str, Policy] = POLICIES) -> dict[str, Any]:
    """The session JSON of every model in ``sources`` and the random baseline (last)."""
    report = SessionReport(dataset, spec)
    for name, source in sources.items():
        report.add(name, source, policies)
    report.random_baseline(list(policies))
    return report.to_dict()


def _cells(values: Sequence[Any], fmt: str) -> list[str]:
    return ["-" if v is None else format(v, fmt) for v in values]


def markdown_table(reports: Sequence[dict[str, Any]]) -> str:
    """One table per report (one per start distance): success@T, mean turns, target rank."""
    lines: list[str] = []
    for rep in reports:
        turns = rep["turns"]
        dist = ", ".join(f"{c} at {d}" for d, c in rep.get("start_distances", {}).items())
        lines += [
            f"**Start {rep['start_distance']} attributes away** ({rep['sessions']} sessions over a gallery of "
            f"{rep.get('gallery', '?')} images; starts: {dist}; k = {rep['k']}; "
            f"{rep.get('asks', 1)} attribute asked per turn in the `{rep.get('phrasing', '?')}` phrasing). "
            f"Success by turn T in percent; mean turns, a session that never finds the target counted as "
            f"{turns + 1}; median rank of the target after each turn.",
            "",
            "| model | policy | " + " | ".join(f"s@{t}" for t in range(1, turns + 1))
            + " | mean turns | target rank after turn " + ", ".join(str(t) for t in range(1, turns + 1)) + " |",
            "|---|---|" + "---:|" * (turns + 2),
        ]
        for name, per in rep["models"].items():
            shown = list(per.items())[:1] if name == RANDOM else per.items()
            for policy, r in shown:
                label = "(any)" if name == RANDOM else policy
                lines.append(f"| {name} | {label} | " + " | ".join(_cells(r["success"], ".1f"))
                             + f" | {r['mean_turns']:.2f} | " + ", ".join(_cells(r["target_rank"], "g")) + " |")
        said = findings(rep)
        lines += ["", " ".join(said), ""] if said else [""]
    return "\n".join(lines)


def findings(rep: dict[str, Any], lead: str = "tirg", at: int = 3) -> list[str]:
    """Generated sentences on ``lead`` (each model at its better policy): who is first at
    turn ``at`` and by how much, and whether ``history`` beats ``last_turn`` from turn 2 on."""
    models = {n: per for n, per in rep["models"].items() if n != RANDOM}
    if lead not in models or len(models) < 2:
        return []
    at = min(at, rep["turns"])
    best = {n: max(r["success"][at - 1] for r in per.values()) for n, per in models.items()}
    order = sorted(best, key=lambda n: -best[n])
    first, second = order[0], order[1]
    if first == lead:
        out = [f"{lead} is first at turn {at} ({best[lead]:.1f}%), {best[lead] - best[second]:.1f} points "
               f"ahead of {second}."]
    else:
        out = [f"{first} is first at turn {at} ({best[first]:.1f}%), {best[first] - best[lead]:.1f} points "
               f"ahead of {lead} ({best[lead]:.1f}%)."]
    per = models[lead]
    if {"history", "last_turn"} <= per.keys() and rep["turns"] >= 2:
        gains = [h - last for h, last in zip(per["history"]["success"], per["last_turn"]["success"], strict=True)][1:]
        verdict = "beats" if all(g > 0 for g in gains) else "does not beat"
        out.append(f"For {lead}, `history` {verdict} `last_turn` at every turn from 2 on "
                   f"(success difference by turn 2..{rep['turns']}: " + ", ".join(f"{g:+.1f}" for g in gains) + ").")
    return out
