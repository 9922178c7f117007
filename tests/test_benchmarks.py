"""Smoke tests of the benchmark harness and its table writer (no timed assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of scripts beside the package
    sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402
from benchmarks.bench_ann import recall_of, sweep  # noqa: E402
from benchmarks.bench_eval import make_protocol_data, recall_library, recall_numpy  # noqa: E402
from benchmarks.common import PeakSampler, Row, percentile, structured_unit_embeddings  # noqa: E402


def _result(rows: list[dict], status: str = "ok", **step) -> dict:
    return {
        "date": "2030-01-02 03:04 UTC",
        "quick": True,
        "total_seconds": 12.5,
        "machine": {
            "cpu_model": "Test CPU",
            "cpu_count": 2,
            "cpu_affinity": 2,
            "torch_threads": 2,
            "memory_gb": 8.0,
            "gpu": None,
            "torch": "t",
            "faiss": "f",
            "numpy": "n",
            "python": "3",
        },
        "steps": {
            "demo": {
                "status": status,
                "rows": rows,
                "seconds": 1.0,
                "peak_rss_mb": 321.0,
                "children_peak_rss_mb": 0.0,
                **step,
            }
        },
    }


def test_percentile_matches_numpy():
    xs = list(np.random.default_rng(0).random(37))
    for q in (0, 50, 99, 100):
        assert percentile(xs, q) == pytest.approx(np.percentile(xs, q))
    with pytest.raises(ValueError):
        percentile([], 50)


def test_render_markdown_has_machine_rows_and_verdicts():
    ok = Row("figure A", "thing", 12.345, "img/s", "bare", 10.0, ">= 80%", True, "note").to_dict()
    miss = Row("figure B", "other", 0.5, "s", target="< 0.1 s", passed=False).to_dict()
    text = report.render_markdown(_result([ok, miss]))
    assert "Test CPU: 2 CPUs" in text and "torch threads 2" in text and "2030-01-02" in text
    assert "| figure A | thing | 12.3 img/s | bare: 10.0 img/s | >= 80% | yes | note |" in text
    assert "| figure B | other | 0.5 s | — | < 0.1 s | **no** |" in text
    assert "| demo | ok | 1.00 | 321 | 0 |" in text


def test_render_markdown_reports_skipped_step_reason():
    text = report.render_markdown(_result([], status="skipped", reason="no cache for a warm start"))
    assert "| demo | — | skipped |" in text and "no cache for a warm start" in text


def test_replace_block_appends_then_replaces(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Project\n\nIntro.\n")
    report.write_readme(_result([]), readme)
    first = readme.read_text()
    assert first.startswith("# Project\n\nIntro.\n\n## Benchmarks\n\n" + report.START)
    assert first.rstrip().endswith(report.END)
    # Text after the block survives a rewrite, and the heading is not added twice.
    readme.write_text(first + "\n## After\n")
    result = _result([Row("new", "m", 1.0, "s").to_dict()])
    report.write_readme(result, readme)
    second = readme.read_text()
    assert second.count("## Benchmarks") == 1 and second.endswith("## After\n")
    assert "| new | m |" in second and second.count(report.START) == 1


def test_replace_block_rejects_a_lone_marker():
    text = f"# x\n{report.START}\nno end\n"
    with pytest.raises(ValueError, match=r"README.md: .*line 2"):
        report.replace_block(text, "table\n", source="README.md")


def test_peak_sampler_sees_a_held_allocation():
    with PeakSampler() as mem:
        block = np.ones(50_000_000, dtype=np.float32)  # 191 MiB, touched
        block[::1024] += 1
        time.sleep(0.1)
    del block
    assert mem.added_mb > 150


def test_library_and_numpy_evaluation_agree():
    data = make_protocol_data(300, 400, seed=3)
    lib, ref = recall_library(data), recall_numpy(data)
    assert lib.keys() == ref.keys()
    for k in lib:
        assert lib[k] == pytest.approx(ref[k], abs=1e-4)  # one query would be 0.33
    assert 0 < lib["R@1"] < 100  # the synthetic queries are neither trivial nor hopeless


def test_ann_sweep_picks_a_setting_that_meets_recall():
    from fashion_retrieval.search.index import GalleryIndex

    gallery = structured_unit_embeddings(3000, 32, intrinsic=8, clusters=30, seed=0)
    queries = structured_unit_embeddings(50, 32, intrinsic=8, clusters=30, seed=1)
    ids = [str(i) for i in range(len(gallery))]
    _, truth = GalleryIndex.build(gallery, ids, kind="flat").search(queries, 10)
    index = GalleryIndex.build(gallery, ids, kind="ivf", nlist=30, codes="pq", pq_m=16)
    points, best = sweep(index, "ivf", queries, truth)
    assert best is not None and best["recall"] >= 0.95
    assert {p["nprobe"] for p in points} > {8} and {p["rerank"] for p in points} == {10, 30}
    # The index is left at the chosen setting.
    assert {k: index.params[k] for k in ("nprobe", "rerank")} == {
        "nprobe": best["nprobe"],
        "rerank": best["rerank"],
    }
    assert recall_of(index.search(queries, 10)[1], truth) == pytest.approx(best["recall"])


def test_lid_estimate_recovers_the_dimension_of_a_flat_subspace():
    from benchmarks.ann_data import lid_mle, relative_contrast

    rng = np.random.default_rng(0)
    for d in (3, 8):
        basis = np.linalg.qr(rng.standard_normal((64, d)))[0].T  # (d, 64), orthonormal rows
        points = rng.uniform(-1, 1, (6000, d)) @ basis  # uniform in a d-cube inside 64-d
        queries = rng.uniform(-0.5, 0.5, (200, d)) @ basis  # inside, away from the faces
        assert lid_mle(queries, points, k=20) == pytest.approx(d, rel=0.25)
    # Neighbours stand out less in more dimensions: the relative contrast falls.
    low = rng.standard_normal((2000, 4)) @ np.linalg.qr(rng.standard_normal((64, 4)))[0].T
    high = rng.standard_normal((2000, 64))
    assert relative_contrast(low[:50], low[50:]) > relative_contrast(high[:50], high[50:]) > 1.0
    with pytest.raises(ValueError, match="more than 20 gallery rows"):
        lid_mle(low[:5], low[:20])


def test_calibration_rule_and_the_saved_choice_match_the_benchmark():
    from benchmarks.ann_data import DEFAULT_JSON, INTRINSIC, choose_intrinsic, load_calibration

    synthetic = {8: {"lid": 9.0}, 16: {"lid": 13.0}, 24: {"lid": 16.0}}
    assert choose_intrinsic(12.0, synthetic) == 16
    assert choose_intrinsic(20.0, synthetic) == 24  # none reaches it: the hardest one
    saved = load_calibration(DEFAULT_JSON)
    assert saved is not None, f"run `python -m benchmarks.ann_data` to write {DEFAULT_JSON}"
    assert saved["chosen_intrinsic"] == INTRINSIC
    assert saved["synthetic"][str(INTRINSIC)]["lid"] >= saved["real"]["lid"]


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_one_step_end_to_end_writes_json_and_readme(tmp_path):
    out, readme = tmp_path / "bench.json", tmp_path / "README.md"
    proc = _run(
        [
            "--quick",
            "--only",
            "evaluation",
            "--json",
            str(out),
            "--readme",
            str(readme),
            "--options",
            json.dumps({"evaluation_size": [200, 300]}),
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["quick"] is True and result["machine"]["cpu_count"] >= 1
    step = result["steps"]["evaluation"]
    assert step["status"] == "ok" and step["peak_rss_mb"] > 0
    speed, memory = step["rows"]
    assert speed["extra"]["library"] == pytest.approx(speed["extra"]["numpy"], abs=1e-4)
    assert speed["value"] > 0 and speed["baseline"] > 0 and memory["unit"] == "MiB"
    text = readme.read_text()
    assert report.START in text and "| evaluation | Fashion200k-sized recall, 200 queries" in text


def test_run_rejects_unknown_step(tmp_path):
    proc = _run(["--only", "nope", "--json", str(tmp_path / "x.json")], tmp_path)
    assert proc.returncode == 2
    assert "unknown benchmark 'nope'" in proc.stderr and "latency" in proc.stderr


def test_run_the_session_step_small(tmp_path):
    """One refinement step (issue 24) through the harness at a small size: p50 and p95 in ms."""
    out = tmp_path / "bench.json"
    proc = _run(["--quick", "--only", "session", "--json", str(out), "--no-readme",
                 "--options", json.dumps({"session_size": 3000})], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    step = json.loads(out.read_text())["steps"]["session"]
    assert step["status"] == "ok", step.get("error")
    (row,) = step["rows"]
    assert row["unit"] == "ms" and "3,000 gallery" in row["measure"] and row["target"] == "reported"
    m = row["extra"]
    assert m["p95"] >= m["p50"] > 0 and m["pick_p50"] > 0 and m["last_turn_p50"] > 0
    assert (m["turn"], m["k"], m["excluded"]) == (3, 8, 18) and m["index"] == "flat"
