"""The dashboard's refinement sessions view: sessions files (and a comparison report's
"sessions") read into curves, a table and a replayed session, found while scanning, and shown
on the Streamlit page."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from _shopper_reports import comparison_report, write_json
from PIL import Image

from fashion_retrieval.dashboard import (
    ResultFileError,
    load_sessions_report,
    replay,
    replay_choices,
    scan_result_dirs,
    sessions_payload,
    sessions_table,
    success_long,
)
from fashion_retrieval.dashboard.charts import success_chart
from fashion_retrieval.dashboard.replay import NO_REPLAYS, hit_caption, turn_summary
from fashion_retrieval.dashboard.sessions import ANY_POLICY, policies, setting_line

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app" / "app.py")
COLOURS = {"s": "grey", "t": "red", "a": "blue", "b": "green", "c": "yellow", "d": "black",
           "e": "white", "f": "orange"}


def _figures(success: list[float], mean: float, ranks: list[Any]) -> dict[str, Any]:
    return {"success": success, "mean_turns": mean, "target_rank": ranks}


def _turn(picture: str, text: str, hits: list[str], rank: int | None, success: bool) -> dict:
    return {"picture": picture, "text": text, "hits": hits, "target_rank": rank, "success": success}


def sessions_data(folder: Path) -> dict[str, Any]:
    """A sessions file in the shape ``evaluation.sessions`` writes (k 3, 3 turns), with tiny
    images written under ``folder/images``: relative paths for most, an absolute one for the
    target and a path to no file for item "gone"."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for item, colour in COLOURS.items():
        Image.new("RGB", (8, 8), colour).save(images / f"{item}.png")
    paths = {i: f"images/{i}.png" for i in COLOURS}
    paths["t"] = str(images / "t.png")
    paths["gone"] = "images/gone.png"
    tirg_last = [_turn("s", "make it red", ["a", "b", "c"], 9, False),
                 _turn("b", "with long sleeves", ["d", "t", "e"], 2, True),
                 _turn("t", "shorter", ["t", "f", "a"], 1, True)]
    return {
        "k": 3, "turns": 3, "start_distance": 5, "sessions": 40,
        "models": {
            "tirg": {"last_turn": _figures([20.0, 60.0, 80.0], 2.4, [12, 4, 1]),
                     "history": _figures([20.0, 70.0, 95.0], 2.1, [12, 3, 1])},
            "concat": {"last_turn": _figures([10.0, 30.0, 50.0], 3.5, [30, 15.5, None]),
                       "history": _figures([10.0, 35.0, 55.0], 3.3, [30, 14, 8])},
            "random": {"last_turn": _figures([1.0, 2.0, 3.0], 4.9, [400, 400, 400])},
        },
        "replays": {
            "tirg": {"last_turn": {"target": "t", "start": "s", "turns": tirg_last},
                     "history": {"target": "t", "start": "s",
                                 "turns": [_turn("s", "make it red", ["t", "a", "b"], 1, True)]}},
            "concat": {"last_turn": {"target": "t", "start": "s",
                                     "turns": [_turn("s", "make it red", ["gone", "c", "a"], 7, False),
                                               _turn("c", "longer", ["t", "d", "e"], 1, True)]}},
        },
        "paths": paths,
    }


def test_figures_read_into_curves_and_table(tmp_path):
    report = load_sessions_report(write_json(tmp_path / "sessions.json", sessions_data(tmp_path)))
    assert report.label == "sessions" and (report.k, report.turns, report.sessions) == (3, 3, 40)
    assert setting_line(report) == (
        "40 simulated sessions, top 3, 3 turns, start 5 attributes from the target."
    )
    assert policies(report) == ["last_turn", "history"]
    data = {**sessions_data(tmp_path), "asks": 1, "phrasing": "heldout"}
    assert setting_line(load_sessions_report(write_json(tmp_path / "s.json", data))).endswith(
        "target, 1 attribute asked per turn in held-out phrasing."
    )

    last = success_long(report, "last_turn")
    assert list(last.columns) == ["model", "turn", "success"]
    assert last[last["model"] == "tirg"]["success"].tolist() == [20.0, 60.0, 80.0]
    assert last["turn"].tolist()[:3] == [1, 2, 3]
    history = success_long(report, "history")  # random has one policy: drawn under both
    assert list(dict.fromkeys(history["model"])) == ["tirg", "concat", "random (last_turn)"]
    assert history[history["model"] == "tirg"]["success"].tolist() == [20.0, 70.0, 95.0]

    table = sessions_table(report)
    assert list(table.columns) == [
        "model", "policy", "success@1", "success@2", "success@3", "mean turns",
        "rank after 1", "rank after 2", "rank after 3",
    ]
    assert table[["model", "policy"]].values.tolist() == [
        ["tirg", "last_turn"], ["tirg", "history"], ["concat", "last_turn"],
        ["concat", "history"], ["random", "last_turn"],
    ]
    concat = table.set_index(["model", "policy"]).loc[("concat", "last_turn")]
    assert concat["mean turns"] == 3.5 and concat["rank after 2"] == 15.5
    assert math.isnan(concat["rank after 3"])  # null in the file: blank, not an error


def test_replay_marks_target_and_pick_and_finds_images(tmp_path):
    report = load_sessions_report(write_json(tmp_path / "sessions.json", sessions_data(tmp_path)))
    assert replay_choices(report) == {"tirg": ["last_turn", "history"], "concat": ["last_turn"]}
    session = replay(report, "tirg", "last_turn")
    assert (session.target.id, session.start.id) == ("t", "s")
    assert session.target.path == str(tmp_path / "images" / "t.png")  # absolute path
    assert session.start.path == str(tmp_path / "images" / "s.png")  # relative to the file
    first, second, third = session.turns
    assert (first.picture.id, first.text, first.target_rank, first.success) == (
        "s", "make it red", 9, False
    )
    assert [h.pick for h in first.hits] == [False, True, False]  # went on with "b"
    assert [h.target for h in second.hits] == [False, True, False]
    assert [h.pick for h in third.hits] == [False, False, False]  # the last turn has no pick
    assert hit_caption(second.hits[1]) == "2. t · ✓ target · ➜ picked"  # went on with it
    assert hit_caption(third.hits[0]) == "1. t · ✓ target"
    assert hit_caption(first.hits[1]) == "2. b · ➜ picked"
    assert turn_summary(first) == "turn 1 · target rank 9 · not yet"
    assert turn_summary(third) == "turn 3 · target rank 1 · found ✓"

    gone = replay(report, "concat", "last_turn").turns[0].hits[0]
    assert gone.picture.path is None and gone.picture.problem == "image not found: images/gone.png"
    with pytest.raises(ResultFileError, match=r"replays\['random'\]\['last_turn'\]: no recorded"):
        replay(report, "random", "last_turn")


def test_older_files_without_replays_or_policies(tmp_path):
    data = sessions_data(tmp_path)
    del data["replays"], data["paths"]
    data["models"]["random"] = _figures([1.0, 2.0, 3.0], 4.9, [400, 400, 400])  # no policy level
    compare = {**comparison_report(), "sessions": data}
    path = write_json(tmp_path / "comparison.json", compare)
    assert sessions_payload(compare) is data and sessions_payload(comparison_report()) is None
    report = load_sessions_report(path)
    assert replay_choices(report) == {} and report.paths == {}
    assert report.models["random"] == {ANY_POLICY: data["models"]["random"]}
    assert "random" in set(success_long(report, "history")["model"])
    assert sessions_table(report)["policy"].tolist()[-1] == ANY_POLICY
    assert "no session replays" in NO_REPLAYS

    replays_no_paths = sessions_data(tmp_path)
    del replays_no_paths["paths"]
    report = load_sessions_report(write_json(tmp_path / "s2.json", replays_no_paths))
    start = replay(report, "tirg", "history").start
    assert start.path is None and start.problem == "no image paths in the file"


def _bad(change):
    data = sessions_data(Path("/nonexistent"))  # images are not needed to fail
    change(data)
    return data


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ({"k": 8, "turns": 5}, "no refinement sessions"),
        (_bad(lambda d: d["models"]["tirg"]["history"].update(success=[1, "x", 3])),
         "models['tirg']['history'].success[1]: expected a number"),
        (_bad(lambda d: d["models"]["concat"].update(history=[1, 2])),
         "models['concat']['history']: expected an object"),
        (_bad(lambda d: d["models"]["concat"]["last_turn"].update(mean_turns="many")),
         "models['concat']['last_turn'].mean_turns"),
        (_bad(lambda d: d["models"]["tirg"]["last_turn"].update(target_rank=3)),
         "target_rank: expected a list"),
    ],
)
def test_malformed_sessions_file_names_the_file(tmp_path, content, problem):
    path = tmp_path / "sessions.json"
    if isinstance(content, str):
        path.write_text(content)
    else:
        write_json(path, content)
    with pytest.raises(ResultFileError, match="sessions.json") as err:
        load_sessions_report(path)
    assert problem in str(err.value)


def test_malformed_replay_names_the_entry(tmp_path):
    data = sessions_data(tmp_path)
    data["replays"]["tirg"]["last_turn"]["turns"][1]["hits"] = "d t e"
    data["replays"]["concat"]["last_turn"]["turns"] = []
    report = load_sessions_report(write_json(tmp_path / "sessions.json", data))  # curves still load
    with pytest.raises(ResultFileError, match=r"\['last_turn'\]\.turns\[1\]: no 'hits' list"):
        replay(report, "tirg", "last_turn")
    with pytest.raises(ResultFileError, match="no 'turns' list"):
        replay(report, "concat", "last_turn")
    assert len(replay(report, "tirg", "history").turns) == 1


def test_scan_finds_sessions_files_and_compare_sessions(tmp_path):
    results = tmp_path / "results"
    write_json(results / "sessions.json", sessions_data(results))
    write_json(results / "comparison.json", {**comparison_report(), "sessions": sessions_data(results)})
    write_json(results / "plain_comparison.json", comparison_report())
    (results / "old_sessions.json").write_text("{truncated")  # named so: listed, its error shown
    write_json(results / "benchmarks.json", {"version": 1, "models": {}})
    found = scan_result_dirs([results])
    assert found.sessions_files == {
        "comparison": results / "comparison.json",
        "old_sessions": results / "old_sessions.json",
        "sessions": results / "sessions.json",
    }
    assert found.shopper_files == {
        "comparison": results / "comparison.json",
        "plain_comparison": results / "plain_comparison.json",
    }


def test_success_chart_is_one_line_per_model(tmp_path):
    report = load_sessions_report(write_json(tmp_path / "sessions.json", sessions_data(tmp_path)))
    spec = success_chart(success_long(report, "last_turn")).to_dict()
    assert spec["mark"]["type"] == "line" and spec["mark"]["point"] is True
    assert spec["encoding"]["x"]["field"] == "turn" and spec["encoding"]["color"]["field"] == "model"
    assert spec["encoding"]["y"]["scale"]["domain"] == [0, 100]


def _run_app(monkeypatch, runs: Path):
    """The dashboard script once under AppTest, scanning ``runs``."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FASHION_RETRIEVAL_RUNS", str(runs))
    return AppTest.from_file(APP, default_timeout=120).run()


def _captions(at) -> list[str]:
    return [img.proto.imgs[0].caption for img in at.get("image")]


def test_app_shows_sessions_curves_table_and_replay(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    write_json(runs / "sessions.json", sessions_data(runs))
    old = sessions_data(runs)
    del old["replays"], old["paths"]
    write_json(runs / "comparison.json", {**comparison_report(), "sessions": old})
    broken = sessions_data(runs)
    broken["models"]["tirg"]["history"]["success"] = "lots"
    write_json(runs / "broken_sessions.json", broken)
    at = _run_app(monkeypatch, runs)
    assert not at.exception and "Refinement sessions" in at.radio(key="view").options
    at.radio(key="view").set_value("Refinement sessions").run()
    assert not at.exception
    assert [h.value for h in at.main.header] == ["Refinement sessions"]
    assert [h.value for h in at.main.subheader] == [
        "comparison · refinement sessions", "sessions · refinement sessions"
    ]
    assert any("broken_sessions" in e.value and "success" in e.value for e in at.error)
    assert len(at.table) == 2 and at.table[1].value.index.names == ["model", "policy"]
    assert "success@3" in at.table[1].value.columns
    charts = [e for e in at.main if getattr(e, "type", "") == "vega_lite_chart"]
    assert len(charts) == 2  # one success curve per file
    assert any(NO_REPLAYS in i.value for i in at.info)  # the older file: curves only

    # the replay: start, target, then per turn its picture and 3 hits (tirg, last_turn first)
    captions = _captions(at)
    assert captions[:2] == ["start · s", "target · t"]
    assert captions[2:6] == ["picture · s", "1. a", "2. b · ➜ picked", "3. c"]
    assert len(captions) == 2 + 3 * 4
    badges = [m.value for m in at.markdown if "badge" in m.value]
    assert badges.count(":green-badge[✓ target]") == 2 and badges.count(":blue-badge[➜ picked]") == 2

    at.selectbox(key="replay_model_1").set_value("concat").run()
    assert not at.exception
    assert "1. gone" in [m.value for m in at.markdown]  # no image: the caption in words
    assert any("image not found: images/gone.png" in c.value for c in at.caption)
    at.selectbox(key="session_policy_1").set_value("history").run()
    assert not at.exception and at.selectbox(key="replay_model_1").options == ["tirg"]
    assert len(_captions(at)) == 2 + 4
