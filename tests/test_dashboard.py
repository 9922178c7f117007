"""The dashboard's logic (results, curves, projections, query tables) and its Streamlit page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fashion_retrieval.dashboard import (
    ProjectionUnavailable,
    category_table,
    combine_runs,
    compare_models,
    embedding_frame,
    group_results,
    is_correct,
    is_recall_metric,
    load_eval_result,
    load_metrics,
    metric_groups,
    project,
    recall_long,
    recall_table,
    scan_result_dirs,
)
from fashion_retrieval.dashboard.ui import parse_args
from fashion_retrieval.data.records import Item, Triplet
from fashion_retrieval.search.query import NO_QUERY, QueryError

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app" / "app.py")


def write_eval(path: Path, model: str, r10: float, categories: bool = True) -> Path:
    """An evaluation JSON in DESIGN.md's shape."""
    data = {
        "dataset": "synthetic",
        "split": "test",
        "protocol": "synthetic",
        "model": model,
        "recall": {"R@10": r10, "R@1": r10 / 3, "R@50": min(100.0, r10 * 2)},
        "categories": {"dress": {"R@10": r10 - 5, "queries": 10}, "shirt": {"R@10": r10 + 5}}
        if categories
        else {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_metrics(path: Path, steps: int = 4) -> Path:
    """A metrics.jsonl as training writes it: train lines, then an eval line."""
    lines = [json.dumps({"step": s, "loss": 2.0 / s, "lr": 1e-3}) for s in range(1, steps + 1)]
    lines.append(json.dumps({"step": steps, "eval": {"R@10": 30.0}}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_eval_result_tables(tmp_path):
    a = load_eval_result(write_eval(tmp_path / "a.json", "tirg", 40.0), label="a")
    b = load_eval_result(write_eval(tmp_path / "b.json", "concat", 20.0, categories=False))
    table = recall_table([a, b])
    assert list(table["model"]) == ["tirg", "concat"]
    assert list(table.columns[-3:]) == ["R@1", "R@10", "R@50"]  # sorted by K, not as text
    assert table.loc[0, "R@10"] == 40.0 and b.label == "b"
    cats = category_table([a, b])
    assert set(cats["category"]) == {"dress", "shirt"} and set(cats["metric"]) == {"R@10"}
    assert cats.query("category == 'dress'")["value"].item() == 35.0
    assert len(recall_long([a, b])) == 6


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"recall": {"R@10": 1}', "line 1"),
        ("[1, 2]", "no 'recall'"),
        ('{"recall": {"mAP": 3}}', "no R@K"),
        ('{"recall": {"R@1": 1}, "categories": [1]}', "'categories'"),
    ],
)
def test_bad_eval_files_name_the_file(tmp_path, text, problem):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem) as err:
        load_eval_result(path)
    assert "bad.json" in str(err.value)


def test_crossmodal_results_form_their_own_group(tmp_path):
    composed = load_eval_result(write_eval(tmp_path / "a.json", "tirg", 40.0))
    path = tmp_path / "t2i.json"
    path.write_text(json.dumps({
        "dataset": "synthetic", "split": "test", "protocol": "crossmodal", "model": "t",
        "recall": {"t2i_R@10": 80.0, "t2i_R@1": 50.0, "i2t_R@1": 40.0, "rsum": 170.0},
    }))  # fmt: skip
    cross = load_eval_result(path)
    assert is_recall_metric("t2i_R@10") and not is_recall_metric("rsum")
    groups = group_results([composed, cross])
    assert list(groups) == ["synthetic · test · synthetic", "synthetic · test · crossmodal"]
    table = recall_table(groups["synthetic · test · crossmodal"])
    assert list(table.columns[5:]) == ["i2t_R@1", "t2i_R@1", "t2i_R@10"]


def test_metrics_curves(tmp_path):
    path = write_metrics(tmp_path / "run" / "metrics.jsonl")
    with path.open("a") as f:
        f.write('{"step": 9, "loss": 0.')  # a run still writing its last line
    df = load_metrics(path)
    assert set(df["metric"]) == {"loss", "lr", "eval/R@10"}
    assert df.query("metric == 'loss'")["step"].tolist() == [1, 2, 3, 4]
    groups = metric_groups(list(df["metric"]))
    assert groups == {"loss": ["loss"], "learning rate": ["lr"], "recall": ["eval/R@10"]}
    both = combine_runs({"r1": df, "r2": df, "empty": df.iloc[:0]})
    assert sorted(both["run"].unique()) == ["r1", "r2"]


def test_bad_metrics_line_is_reported_with_line_number(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1}\nnot json\n{"step": 2, "loss": 1}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2"):
        load_metrics(path)
    path.write_text('{"loss": 1}\n')
    with pytest.raises(ValueError, match="line 1: missing a numeric 'step'"):
        load_metrics(path)


def test_projections_separate_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(16, dtype=np.float32)[:3] * 5  # three well separated clusters
    x = np.concatenate([c + 0.05 * rng.standard_normal((10, 16)) for c in centres])  # (30, 16)
    labels = np.repeat(np.arange(3), 10)
    for method in ("pca", "tsne"):
        xy = project(x, method)
        assert xy.shape == (30, 2) and np.isfinite(xy).all()
        means = np.stack([xy[labels == c].mean(0) for c in range(3)])
        spread = max(np.linalg.norm(xy[labels == c] - means[c], axis=1).max() for c in range(3))
        gap = min(np.linalg.norm(means[i] - means[j]) for i in range(3) for j in range(i))
        assert gap > spread, method  # clusters stay apart in 2-D
    with pytest.raises(ValueError, match="valid projections"):
        project(x, "isomap")
    with pytest.raises(ValueError, match="at least 3"):
        project(x[:2], "pca")


def test_umap_missing_gives_a_clear_message():
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(ProjectionUnavailable, match="umap-learn"):
            project(np.ones((5, 3)), "umap")
    else:
        assert project(np.random.default_rng(0).random((20, 3)), "umap").shape == (20, 2)


def test_embedding_frame_has_attributes():
    items = [
        Item("a", "/a.png", "red dress", "dress", {"color": "red"}),
        Item("b", "/b.png", "blue shirt", "shirt", {"color": "blue", "pattern": "striped"}),
    ]
    frame = embedding_frame(items, np.array([[0.0, 1.0], [2.0, 3.0]]))
    assert frame["pattern"].tolist() == ["(none)", "striped"]
    assert frame.loc[1, "x"] == 2.0
    with pytest.raises(ValueError, match="shape"):
        embedding_frame(items, np.zeros((3, 2)))


class BruteForceSearcher:
    """Exact cosine search over fixed vectors: a reference for the browser's table logic."""

    def __init__(self, items: list[Item], vectors: np.ndarray, queries: dict[str, np.ndarray]):
        self.items, self.vectors, self.queries = items, vectors, queries

    def search(self, image=None, text=None, k=10):
        from types import SimpleNamespace

        q = self.queries[text]  # (D,)
        scores = self.vectors @ q  # (N,)
        order = np.argsort(-scores)[:k]
        return [
            SimpleNamespace(
                id=self.items[i].id,
                caption=self.items[i].caption,
                score=float(scores[i]),
                category="c",
                path=self.items[i].path,
            )
            for i in order
        ]


def test_compare_models_marks_targets_and_drops_the_query_image():
    items = [Item(str(i), f"/{i}.png", f"cap{i % 3}", "c") for i in range(6)]
    vectors = np.eye(6, dtype=np.float32)
    q = {"t": np.array([0.9, 0.1, 0.5, 0.3, 0.0, 0.2], dtype=np.float32)}
    trip = Triplet(source="0", target="2", text="t", category="c", target_caption="cap2")
    out = compare_models(
        {"m": BruteForceSearcher(items, vectors, q)},
        image="/0.png",
        text="t",
        k=3,
        triplet=trip,
        protocol="synthetic",
        exclude="0",
    )
    table = out["m"]
    assert table["id"].tolist() == ["2", "3", "5"] and table["rank"].tolist() == [1, 2, 3]
    assert table["correct"].tolist() == [True, False, True]  # "5" shares the target caption
    assert is_correct("5", "cap2", trip, "fashioniq") is False  # FashionIQ: ids only
    with pytest.raises(QueryError, match=NO_QUERY):  # the search layer's rules
        compare_models({}, image=None, text="  ")
    with pytest.raises(QueryError, match="K must be a whole number of at least 1, not 0"):
        compare_models({}, image="/0.png", k=0)


def test_scan_finds_results_runs_and_checkpoints(tmp_path):
    write_eval(tmp_path / "runs" / "tirg" / "eval.json", "tirg", 40.0)
    write_eval(tmp_path / "runs" / "extra" / "fashioniq_val.json", "x", 10.0)
    write_metrics(tmp_path / "runs" / "tirg" / "metrics.jsonl")
    (tmp_path / "runs" / "tirg" / "config.json").write_text("{}")  # not a result
    ckpt = tmp_path / "runs" / "tirg" / "final"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(b"")
    found = scan_result_dirs([tmp_path / "runs", tmp_path / "nowhere"])
    assert sorted(found.eval_files) == ["runs/extra/fashioniq_val", "runs/tirg"]
    assert list(found.metrics_files) == ["runs/tirg"] and list(found.checkpoints) == [
        "runs/tirg/final"
    ]
    assert len(found.errors) == 1 and "nowhere" in found.errors[0]


def test_parse_args_ignores_foreign_options():
    args = parse_args(["-x", "tests/test_dashboard.py", "--runs", "a", "--runs", "b", "-q"])
    assert args.runs == ["a", "b"] and args.split == ""


def run_app(monkeypatch, runs: list[Path], **env: str):
    """Run the dashboard script once under AppTest with result folders from the environment."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FASHION_RETRIEVAL_RUNS", ":".join(str(r) for r in runs))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return AppTest.from_file(APP, default_timeout=120).run()


def test_app_recall_and_curves_without_models(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    for name, r10 in [("tirg", 40.0), ("concat", 25.0), ("image_only", 10.0)]:
        write_eval(runs / name / "eval.json", name, r10)
        write_metrics(runs / name / "metrics.jsonl")
    (runs / "broken").mkdir()
    (runs / "broken" / "eval.json").write_text('{"recall": {"R@10": 3}, "categories": 7}')
    at = run_app(monkeypatch, [runs, tmp_path / "missing"])
    assert not at.exception
    assert sorted(at.table[0].value["model"]) == ["concat", "image_only", "tirg"]
    assert any("broken" in e.value and "'categories'" in e.value for e in at.error)
    assert any("missing" in w.value for w in at.sidebar.warning)
    at.radio(key="view").set_value("Training curves").run()
    assert not at.exception and not [e for e in at.error if "Training log" in e.value]
    charts = [e for e in at.main if getattr(e, "type", "") == "vega_lite_chart"]
    assert len(charts) == 3  # loss, learning rate, recall


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny real checkpoints with their evaluation JSONs and logs (see browser_utils)."""
    from browser_utils import make_tiny_results

    return make_tiny_results(tmp_path_factory.mktemp("tiny"))


def _captions(at) -> list[str]:
    return [img.proto.imgs[0].caption for img in at.get("image")]


def test_app_with_tiny_checkpoints(tiny, monkeypatch):
    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.search.retriever import Retriever

    bad = tiny["runs"].parent / "broken_ckpt"
    bad.mkdir(exist_ok=True)
    (bad / "config.json").write_text('{"model_type": "fashion_retrieval", "embed_dim": "x"}')
    (bad / "model.safetensors").write_bytes(b"not weights")
    env = {k: v for k, v in tiny["env"].items() if k != "FASHION_RETRIEVAL_RUNS"}
    at = run_app(monkeypatch, [tiny["runs"], bad], **env)
    assert not at.exception
    assert sorted(at.table[0].value["model"]) == sorted(tiny["models"])  # every model
    at.sidebar.multiselect(key="checkpoints").set_value(
        [*at.sidebar.multiselect(key="checkpoints").options]
    )
    at.radio(key="view").set_value("Embedding map").run()
    assert not at.exception
    assert [e for e in at.error if "broken_ckpt" in e.value and "could not be loaded" in e.value]
    charts = [e for e in at.main if getattr(e, "type", "") == "vega_lite_chart"]
    assert len(charts) == len(tiny["models"])  # one map per model that loaded
    at.selectbox(key="projection").set_value("tsne").run()
    at.selectbox(key="color_by").set_value("color").run()
    assert not at.exception and not [e for e in at.error if "projection failed" in e.value]

    at.radio(key="view").set_value("Query browser").run()
    assert not at.exception
    triplet = tiny["dataset"].triplets[0]
    captions = _captions(at)
    assert captions[0].startswith("query image") and captions[1].startswith("target")
    assert len(captions) == 2 + 5 * len(tiny["models"])
    # the ✓ marks agree with the target found by each model's own Retriever
    source = tiny["dataset"].item_by_id()[triplet.source]
    headers = [h.value for h in at.main.get("subheader")]
    assert headers == [f"runs/{n}/final" for n in sorted(tiny["models"])]  # side by side, by label
    for i, name in enumerate(sorted(tiny["models"])):
        retriever = Retriever(load_model(tiny["runs"] / name / "final"), tiny["dataset"].items)
        hits = retriever.search(source.path, triplet.text, k=5, exclude_ids=[source.id])
        shown = captions[2 + 5 * i : 2 + 5 * (i + 1)]
        assert [c.startswith("✓") for c in shown] == [h.id == triplet.target for h in hits]
        assert [c.split(" · ")[0].lstrip("✓ ").split(". ", 1)[1] for c in shown] == [
            h.caption for h in hits
        ]

    at.radio(key="query_mode").set_value("Make one").run()
    at.text_input(key="query_text").input("yellow striped dress").run()
    assert not at.exception and len(_captions(at)) == 5 * len(tiny["models"])


def test_missing_gallery_folder_is_an_error_not_a_render(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    write_eval(runs / "tirg" / "eval.json", "tirg", 40.0)
    ckpt = runs / "tirg" / "final"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(b"")
    gone = tmp_path / "no_catalogue"
    at = run_app(
        monkeypatch,
        [runs],
        FASHION_RETRIEVAL_DATASET="synthetic",
        FASHION_RETRIEVAL_DATA_ROOT=str(gone),
    )
    at.radio(key="view").set_value("Query browser").run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)
    assert not gone.exists()  # nothing was rendered there
