"""The approximate-search benchmark's data, and its calibration on the real model's embeddings.

    python -m benchmarks.ann_data [--home DIR] [--json results/ann_calibration.json] [--default-spec JSON]

A million real gallery embeddings cannot be made on this machine (the backbone runs at ~50
images/s), so the benchmark draws them from a model: a Gaussian mixture in a low-dimensional
subspace plus isotropic noise (``benchmarks.common.structured_unit_embeddings``). How hard
such data is for an approximate index depends on its local intrinsic dimensionality (LID):
the higher it is, the less the nearest neighbours stand out from the rest. Uniform vectors
on the 512-d sphere are the worst case, and real image embeddings are far from it.

This command measures the real thing at the scale available here: the embedded default's
TIRG model, its composed queries against its gallery (train and val splits). It then
draws mixtures of growing intrinsic dimension at the same sizes and picks the smallest one
whose LID is not below the real queries'. The benchmark's data is therefore at least as
hard, locally, as the model's own embeddings; how the real distribution fills in at 1M
items cannot be observed here, which the README says.

Statistics, each of queries against a gallery:
- LID: the Levina-Bickel maximum-likelihood estimate from the distances to the ``k``
  nearest gallery items, median over queries;
- relative contrast: mean distance over nearest distance (He et al., 2012);
- recall@10 of IVF-flat with 32 cells at nprobe 1, 2, 4, 8 (how well a coarse partition
  keeps the true neighbours together).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import structured_unit_embeddings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "results" / "ann_calibration.json"

# The mixture the benchmark uses; INTRINSIC is what `python -m benchmarks.ann_data` picks.
INTRINSIC = 20
AMBIENT = 0.3  # isotropic noise, relative norm
POINTS_PER_CLUSTER = 100
CANDIDATES = (8, 12, 16, 20, 24, 32)
LID_K = 20


def mixture(n: int, dim: int, seed: int, *, gallery_size: int | None = None, intrinsic: int = INTRINSIC):
    """``(n, dim)`` unit vectors from the benchmark's mixture.

    The mixture has one centre per ``POINTS_PER_CLUSTER`` gallery items; queries pass the
    gallery's size as ``gallery_size`` (and another ``seed``) to come from the same mixture.
    """
    clusters = max(1, (gallery_size or n) // POINTS_PER_CLUSTER)
    return structured_unit_embeddings(n, dim, intrinsic, clusters, ambient=AMBIENT, seed=seed)


def _knn_distances(queries: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distances ``(Q, k)`` from each query to its ``k`` nearest gallery rows."""
    import faiss

    index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))
    d2, _ = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return np.sqrt(np.maximum(d2, 0.0))


def lid_mle(queries: np.ndarray, gallery: np.ndarray, k: int = LID_K) -> float:
    """Median over queries of the Levina-Bickel MLE of local intrinsic dimensionality.

    For one query with sorted neighbour distances ``r_1 <= ... <= r_k``:
    ``LID = -1 / mean_{i<k} log(r_i / r_k)``. Queries that coincide with a gallery row
    (distance 0) are skipped.
    """
    if len(gallery) <= k:
        raise ValueError(f"LID with k={k} needs more than {k} gallery rows, got {len(gallery)}")
    r = _knn_distances(queries, gallery, k)  # (Q, k), ascending
    r = r[r[:, 0] > 1e-6]
    if len(r) == 0:
        raise ValueError("every query coincides with a gallery row")
    logs = np.log(r[:, :-1] / r[:, -1:])  # (Q, k-1), all <= 0
    return float(np.median(-1.0 / logs.mean(axis=1)))


def relative_contrast(queries: np.ndarray, gallery: np.ndarray) -> float:
    """Mean over queries of (mean distance to the gallery) / (nearest distance)."""
    q = np.asarray(queries, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    d2 = (q**2).sum(1)[:, None] + (g**2).sum(1)[None, :] - 2 * q @ g.T  # (Q, G)
    d = np.sqrt(np.maximum(d2, 0.0))
    nearest = d.min(axis=1)
    keep = nearest > 1e-6
    return float(np.mean(d[keep].mean(axis=1) / nearest[keep]))


def recall_of(found: np.ndarray, truth: np.ndarray) -> float:  # (Q, K), (Q, K) positions
    """Mean share of each query's true top ``K`` present in its approximate top ``K``."""
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def ivf_recall_curve(
    queries: np.ndarray, gallery: np.ndarray, nlist: int = 32, nprobes=(1, 2, 4, 8), k: int = 10
) -> dict[str, float]:
    """Recall@k of the exact top ``k`` for IVF-flat with ``nlist`` cells at each nprobe."""
    from fashion_retrieval.search.index import GalleryIndex

    ids = [str(i) for i in range(len(gallery))]
    _, truth = GalleryIndex.build(gallery, ids, "flat").search(queries, k)
    index = GalleryIndex.build(gallery, ids, "ivf", nlist=nlist)
    curve = {}
    for nprobe in nprobes:
        index.set_search_params(nprobe=nprobe)
        curve[str(nprobe)] = round(recall_of(index.search(queries, k)[1], truth), 3)
    return curve


def neighbourhood_stats(queries: np.ndarray, gallery: np.ndarray) -> dict[str, Any]:
    """LID, relative contrast and the IVF recall curve of ``queries`` against ``gallery``."""
    return {
        "gallery": len(gallery),
        "queries": len(queries),
        "dim": int(gallery.shape[1]),
        "lid": round(lid_mle(queries, gallery), 2),
        "relative_contrast": round(relative_contrast(queries, gallery), 3),
        "ivf32_recall@10": ivf_recall_curve(queries, gallery),
    }


def choose_intrinsic(real_lid: float, synthetic: dict[int, dict[str, Any]]) -> int:
    """The smallest candidate whose LID is at least the real one (the largest if none is)."""
    ok = [c for c in sorted(synthetic) if synthetic[c]["lid"] >= real_lid]
    return ok[0] if ok else max(synthetic)


def real_embeddings(home: str | None = None, spec: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The embedded default's TIRG gallery ``(N, D)`` and composed queries ``(Q, D)``.

    Train and val splits together; builds the default first if it is not cached.
    ``spec``: a ``DefaultSpec`` other than the product default (e.g. a tiny one for tests).
    """
    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.evaluation.embeddings import ModelEmbeddings
    from fashion_retrieval.models.feature_cache import cached_image_features
    from fashion_retrieval.serving.default import DefaultSpec, build_default, synthetic_catalogue

    spec = spec or DefaultSpec()
    root = build_default(home, spec, log=lambda m: print(m, file=sys.stderr))
    model = load_model(str(root / "models" / "tirg" / "final")).eval()
    galleries, queries = [], []
    for split in ("train", spec.gallery_split):
        dataset = synthetic_catalogue(root, spec, split)
        feats = cached_image_features(model, dataset.items, str(root / "features"))
        source = ModelEmbeddings(model, dataset.items, features=feats)
        galleries.append(source.item_embeddings().numpy())
        queries.append(source.query_embeddings(dataset.triplets).numpy())
    return np.concatenate(galleries), np.concatenate(queries)


def calibrate(gallery: np.ndarray, queries: np.ndarray, dim: int = 512) -> dict[str, Any]:
    """Real statistics, each candidate mixture's at the same sizes, and the choice."""
    real = neighbourhood_stats(queries, gallery)
    n, q = len(gallery), min(len(queries), 500)
    synthetic = {}
    for c in CANDIDATES:
        g = mixture(n, dim, seed=0, intrinsic=c)
        qs = mixture(q, dim, seed=1, gallery_size=n, intrinsic=c)
        synthetic[c] = neighbourhood_stats(qs, g)
        print(f"intrinsic {c}: {synthetic[c]}", file=sys.stderr)
    chosen = choose_intrinsic(real["lid"], synthetic)
    return {
        "real": {"source": "embedded default, TIRG, composed queries vs gallery (train + val)", **real},
        "synthetic": {str(c): s for c, s in synthetic.items()},
        "mixture": {"ambient": AMBIENT, "points_per_cluster": POINTS_PER_CLUSTER, "dim": dim},
        "rule": "smallest intrinsic dimension whose LID is at least the real LID",
        "chosen_intrinsic": chosen,
    }


def load_calibration(path: Path = DEFAULT_JSON) -> dict[str, Any] | None:
    """The saved calibration, or None when it was never run."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", default=None, help="cache of the embedded default")
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the calibration")
    p.add_argument("--default-spec", default=None, metavar="JSON_OR_FILE",
                   help="fields of the embedded default to change, as for `python app.py "
                        "--default-spec` (a tiny default checks the command in seconds)")
    args = p.parse_args(argv)
    from fashion_retrieval.serving.default import DefaultSpec

    gallery, queries = real_embeddings(args.home, DefaultSpec.from_overrides(args.default_spec))
    result = calibrate(gallery, queries)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    real = result["real"]
    print(f"real: LID {real['lid']}, relative contrast {real['relative_contrast']}, IVF {real['ivf32_recall@10']}")
    chosen = result["chosen_intrinsic"]
    print(f"chosen intrinsic dimension: {chosen} ({result['synthetic'][str(chosen)]})")
    if chosen != INTRINSIC:
        print(f"note: benchmarks/ann_data.py uses INTRINSIC = {INTRINSIC}; update it to {chosen}")
    return 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
