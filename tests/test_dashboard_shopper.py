"""The dashboard's shopper view: comparison and default-quality reports read into tables,
found while scanning, and shown on the Streamlit page."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _shopper_reports import comparison_report, quality_report, write_json

from fashion_retrieval.dashboard import (
    ResultFileError,
    control_long,
    control_table,
    default_result_dirs,
    load_shopper_report,
    one_gallery_table,
    phrasing_table,
    scan_result_dirs,
    words_table,
)
from fashion_retrieval.dashboard.charts import control_chart
from fashion_retrieval.dashboard.shopper import (
    COMPARISON,
    DEFAULT_QUALITY,
    ordering_line,
    words_note,
)

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app" / "app.py")
SHARE_COLUMNS = [
    f"{s}{suffix}"
    for s in ("both", "exact", "asked", "type", "others")
    for suffix in ("", " ceiling", " % of ceiling")
]


def test_comparison_report_tables(tmp_path):
    report = load_shopper_report(write_json(tmp_path / "comparison.json", comparison_report()))
    assert report.kind == COMPARISON and report.label == "comparison"
    assert list(report.models) == ["tirg", "image_only"]  # the file's order
    assert "hard preset" in report.setting and "24 gallery images" in report.setting
    assert "20 requests in held-out phrasing, top 5" in report.setting
    assert ordering_line(report) == "Expected ordering does not hold: tirg above baselines on control ✗."

    one = one_gallery_table(report)
    assert list(one.columns) == [
        "model", "R@1", "R@10", "R@50", "per category R@1", "per category R@10", "per category R@50"
    ]
    assert one["model"].tolist() == ["tirg", "image_only"]
    assert one["R@1"].tolist() == [16.6667, 27.7778]
    assert one["per category R@10"].tolist() == [94.4444, 83.3333]

    control = control_table(report)
    assert list(control.columns) == ["model", *SHARE_COLUMNS]
    tirg = control.set_index("model").loc["tirg"]
    assert (tirg["both"], tirg["both ceiling"], tirg["both % of ceiling"]) == (7.0, 36.0, 19.44)
    assert (tirg["others"], tirg["others ceiling"], tirg["others % of ceiling"]) == (21.0, 58.0, 36.21)
    assert control.set_index("model").loc["image_only", "exact % of ceiling"] == 22.22

    phrasing = phrasing_table(report)
    assert list(phrasing.columns) == [
        "model", "train R@10", "held-out R@10", "gap R@10", "train R@1", "held-out R@1",
        "held-out sentences R@10", "held-out words R@10", "development words R@10",
    ]
    row = phrasing.set_index("model").loc["image_only"].tolist()
    assert row[:5] == [83.3333, 77.7778, 5.56, 27.7778, 22.2222]
    assert all(math.isnan(v) for v in row[5:])  # a report from before the gap's parts: blank
    assert words_table(report).empty and words_note(report) == ""  # compare has no text queries

    long = control_long(report)
    assert list(long.columns) == ["model", "share", "value", "ceiling", "of_ceiling"]
    assert len(long) == 2 * 5
    both = long[(long["model"] == "image_only") & (long["share"] == "both")].iloc[0]
    assert (both["value"], both["ceiling"], both["of_ceiling"]) == (13.0, 36.0, 36.11)


def test_default_quality_report_tables(tmp_path):
    report = load_shopper_report(write_json(tmp_path / "q.json", quality_report()), label="dq")
    assert report.kind == DEFAULT_QUALITY and report.label == "dq" and not report.ordering
    assert "3000 products" in report.setting and "2400 images" in report.setting
    assert "400 requests" in report.setting and ordering_line(report) == ""

    one = one_gallery_table(report)
    assert list(one.columns) == ["model", "R@1", "R@10", "R@50"]  # R@1 first whatever the file's order
    assert one.set_index("model").loc["text_only"].tolist() == [5.0, 15.0, 25.0]

    control = control_table(report)
    assert list(control.columns) == ["model", *SHARE_COLUMNS]
    assert control.set_index("model").loc["tirg", "both"] == 30.0
    assert control.set_index("model").loc["tirg", "both % of ceiling"] == round(100 * 30 / 36, 2)

    phrasing = phrasing_table(report).set_index("model")
    assert phrasing.loc["tirg", "train R@10"] == 36.0 and phrasing.loc["tirg", "held-out R@10"] == 30.0
    assert phrasing.loc["tirg", "gap R@10"] == 6.0
    assert phrasing.loc["tirg", ["held-out sentences R@10", "held-out words R@10",
                                 "development words R@10"]].tolist() == [35.0, 32.0, 33.0]

    words = words_table(report)
    assert list(words.columns) == ["model", "colour + garment", "pattern + garment"]
    assert words.set_index("model").loc["tirg"].tolist() == [55.5, 70.25]
    assert words_note(report) == "top 4; 96 colour, 48 pattern queries"


def test_missing_figures_are_blank_not_errors(tmp_path):
    data = quality_report()
    del data["models"]["text_only"]["phrasing"]
    data["models"]["tirg"]["control"]["exact_of_ceiling"] = float("nan")  # a zero ceiling
    report = load_shopper_report(write_json(tmp_path / "q.json", data))
    assert phrasing_table(report)["model"].tolist() == ["tirg"]
    assert math.isnan(control_table(report).set_index("model").loc["tirg", "exact % of ceiling"])


def _bad(data_change):
    data = comparison_report()
    data_change(data)
    return data


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "not a shopper report"),
        ({"results": [{"model": "tirg", "recall": {"R@10": 3}}]}, "not a shopper report"),
        (_bad(lambda d: d["results"][0]["control"].update(both="high")), "results[0] (tirg).control.both"),
        (_bad(lambda d: d["results"][1].pop("control")), "results[1] (image_only): no 'control'"),
        (_bad(lambda d: d["results"][1].pop("model")), "results[1] has no 'model'"),
        (_bad(lambda d: d["results"][0].update(phrasing=[1])), "(tirg).phrasing: expected an object"),
        ({"models": {"tirg": {"control": 5}}}, "models['tirg'].control: expected an object"),
    ],
)
def test_malformed_report_names_the_file(tmp_path, content, problem):
    path = tmp_path / "report.json"
    if isinstance(content, str):
        path.write_text(content)
    else:
        write_json(path, content)
    with pytest.raises(ResultFileError, match="report.json") as err:
        load_shopper_report(path)
    assert problem in str(err.value)


def test_missing_report_file_is_named(tmp_path):
    with pytest.raises(ResultFileError, match=r"gone\.json: no such file"):
        load_shopper_report(tmp_path / "gone.json")


def test_scan_finds_shopper_reports_beside_eval_files(tmp_path):
    results = tmp_path / "results"
    write_json(results / "comparison.json", comparison_report())
    write_json(results / "default_quality.json", quality_report())
    old = comparison_report()
    for row in old["results"]:
        del row["control"]
    write_json(results / "old_comparison.json", old)  # before the shopper figures: not shown
    write_json(results / "benchmarks.json", {"version": 1, "steps": {}})
    write_json(tmp_path / "runs" / "tirg" / "eval.json", {"recall": {"R@10": 4.0}})
    found = scan_result_dirs([results])
    assert found.shopper_files == {
        "comparison": results / "comparison.json",
        "default_quality": results / "default_quality.json",
    }
    assert not found.eval_files
    both = scan_result_dirs([tmp_path / "runs", results])
    assert list(both.eval_files) == ["runs/tirg"]
    assert sorted(both.shopper_files) == ["results/comparison", "results/default_quality"]


def test_default_result_dirs_include_results(monkeypatch, tmp_path):
    monkeypatch.delenv("FASHION_RETRIEVAL_RUNS", raising=False)
    monkeypatch.setenv("FASHION_RETRIEVAL_HOME", str(tmp_path))
    assert default_result_dirs() == [tmp_path / "default", Path("runs"), Path("results")]


def test_control_chart_has_bars_and_ceiling_ticks(tmp_path):
    report = load_shopper_report(write_json(tmp_path / "c.json", comparison_report()))
    spec = control_chart(control_long(report)).to_dict()
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks == ["bar", "tick"]
    assert spec["layer"][1]["encoding"]["y"]["field"] == "ceiling"
    assert spec["layer"][0]["encoding"]["xOffset"]["field"] == "model"


def _run_app(monkeypatch, runs: Path):
    """The dashboard script once under AppTest, scanning ``runs``."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FASHION_RETRIEVAL_RUNS", str(runs))
    return AppTest.from_file(APP, default_timeout=120).run()


def test_app_shows_the_shopper_view_when_a_report_is_found(tmp_path, monkeypatch):
    plain = tmp_path / "plain"  # the scan is cached for 30 s: a second folder, not a new file
    write_json(plain / "tirg" / "eval.json", {"recall": {"R@10": 4.0}, "model": "tirg"})
    at = _run_app(monkeypatch, plain)
    assert not at.exception and "Shopper view" not in at.radio(key="view").options

    runs = tmp_path / "runs"
    write_json(runs / "tirg" / "eval.json", {"recall": {"R@10": 4.0}, "model": "tirg"})
    write_json(runs / "comparison.json", comparison_report())
    write_json(runs / "default_quality.json", quality_report())
    broken = quality_report()
    broken["models"]["tirg"]["control"]["both"] = "lots"
    write_json(runs / "broken_quality.json", broken)
    at = _run_app(monkeypatch, runs)
    assert not at.exception and "Shopper view" in at.radio(key="view").options
    at.radio(key="view").set_value("Shopper view").run()
    assert not at.exception
    assert [h.value for h in at.main.header] == ["Shopper view: composition control"]
    assert [h.value for h in at.main.subheader] == [
        "comparison · comparison report", "default_quality · default quality report"
    ]
    assert any("broken_quality" in e.value and "control.both" in e.value for e in at.error)
    # comparison: one gallery, control, phrasing; default quality: the same plus words to image
    assert len(at.table) == 3 + 4
    assert list(at.table[0].value.index) == ["tirg", "image_only"]
    assert list(at.table[1].value.columns) == SHARE_COLUMNS
    assert list(at.table[6].value.columns) == ["colour + garment", "pattern + garment"]
    text = " ".join(m.value for m in at.markdown)
    for figure in ("**One gallery**", "**Composition control**", "**Held-out phrasing**", "**Words to image**"):
        assert figure in text
    charts = [e for e in at.main if getattr(e, "type", "") == "vega_lite_chart"]
    assert len(charts) == 2  # control vs ceiling, one per report
