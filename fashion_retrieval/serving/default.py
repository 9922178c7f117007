"""The embedded default: a synthetic catalogue and five models trained on it, cached.

First start (no checkpoint configured): render the synthetic catalogue, train TIRG,
concat, text-only and image-only heads (composed queries) and a caption -> image model
(``text_to_image``, for the Text to image tab) on cached features of the offline
``efficientnet_lite0`` backbone, and build each model's faiss gallery index. Everything
goes under ``$FASHION_RETRIEVAL_HOME/default`` (default ``~/.cache/fashion_retrieval``)::

    default/
      data/                synthetic catalogue (FashionIQ layout)
      features/            backbone feature cache, shared by every model
      models/<name>/final  checkpoint (save_pretrained folder) + index/ (faiss, ids, fingerprint)
      COMPLETE.json        written last, atomically: the spec and the build timings

A build that was interrupted resumes per model: finished checkpoints (a ``final`` folder)
are kept, half-trained ones are removed and retrained. A different spec rebuilds.
Later starts only load the checkpoints and their saved indexes (seconds).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from queue import Queue
from typing import Any

from fashion_retrieval.data.records import RetrievalDataset
from fashion_retrieval.paths import default_dir, index_dir_for
from fashion_retrieval.serving.catalogue import Catalogue
from fashion_retrieval.serving.models import Service, load_retriever
from fashion_retrieval.training.recipe import load_recipe, shopper_config

MARKER = "COMPLETE.json"
Log = Callable[[str], None]


_RECIPE = load_recipe()  # training/configs/recipes/shopper.yaml: every default below comes from it
_BASE, _MODEL, _DEFAULT = _RECIPE["base"], _RECIPE["base"]["model"], _RECIPE["default"]


@dataclass(frozen=True)
class DefaultSpec:
    """What the embedded default is made of (a change in any field rebuilds the cache): a view of
    the shopper recipe (``training/configs/recipes/shopper.yaml``, the comparison's too), overridable."""

    preset: str = _RECIPE["catalogue"]["preset"]
    products: int = _RECIPE["catalogue"]["products"]
    seed: int = _RECIPE["catalogue"]["seed"]
    train_seed: int | None = None  # the models' training seed when not ``seed`` (a seed spread on one catalogue)
    gallery_split: str = _DEFAULT["gallery_split"]  # "+" joins splits; training evaluates on the first
    image_encoder: str = _MODEL["image_encoder"]
    image_size: int | None = _MODEL["image_size"]
    colour_features: str = _MODEL["colour_features"]
    mid_grid: int = _MODEL["mid_grid"]
    text_encoder: str = _MODEL["text_encoder"]
    freeze_text_encoder: bool = _RECIPE["text_encoders"][_MODEL["text_encoder"]]["model"]["freeze_text_encoder"]
    word_knowledge: bool = True  # colour names and spelling (models/words.py) beside the encoder
    pretrained: bool = _MODEL["pretrained"]
    embed_dim: int = _MODEL["embed_dim"]
    compositors: tuple[str, ...] = tuple(n for n, (_, task) in _DEFAULT["models"].items() if task == "composed")
    crossmodal: bool = "text_to_image" in _DEFAULT["models"]  # the caption -> image model of that tab
    generated_pairs: int = _RECIPE["tasks"]["composed"]["generated_pairs"]
    generated_descriptions: int = _RECIPE["tasks"]["crossmodal"]["generated_descriptions"]
    max_steps: int = _RECIPE["steps"]
    batch_size: int = _BASE["batch_size"]
    lr: float = _BASE["lr"]
    modality_dropout: float = _DEFAULT["config"]["model"]["modality_dropout"]
    shared_value_batches: float = _RECIPE["tasks"]["composed"]["shared_value_batches"]
    relevance: bool = True  # the relevance term at each compositor's tuned weight

    def models(self) -> list[tuple[str, str, str]]:
        """(name, compositor, task) of every default model."""
        extra = [(n, c, t) for n, (c, t) in _DEFAULT["models"].items() if t != "composed"]
        return [(c, c, "composed") for c in self.compositors] + (extra if self.crossmodal else [])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples as lists)."""
        d = asdict(self)
        d["compositors"] = list(self.compositors)
        return d

    def build_key(self) -> dict[str, Any]:
        """What a cached build must match: the fields, and the colour lexicon the text side reads."""
        key = self.to_dict()
        if key["train_seed"] is None:  # the same key as before the field existed
            del key["train_seed"]
        if self.word_knowledge:
            from fashion_retrieval.models.words import lexicon_fingerprint

            key["colour_lexicon"] = lexicon_fingerprint()
        return key

    @classmethod
    def from_overrides(cls, text: str | None) -> DefaultSpec:
        """The default spec with the fields of ``text`` (a JSON object, or a path to one) changed.

        ``None`` or an empty string gives the plain default. An unknown field or a JSON
        error raises ``ValueError`` naming it.
        """
        if not text or not text.strip():
            return cls()
        is_json = text.lstrip().startswith("{")  # a long JSON string is no file name
        raw = text if is_json else Path(text).read_text(encoding="utf-8") if Path(text).is_file() else text
        try:
            fields = json.loads(raw)
        except ValueError as e:
            raise ValueError(f"default spec overrides are not valid JSON ({e}): {text!r}") from e
        if not isinstance(fields, dict):
            raise ValueError(f"default spec overrides must be a JSON object, got {text!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown default spec fields {unknown}; valid: {sorted(known)}")
        if "compositors" in fields:
            fields["compositors"] = tuple(fields["compositors"])
        return cls(**fields)


def _read_marker(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _write_marker(root: Path, payload: dict[str, Any]) -> None:
    from fashion_retrieval.io_utils import atomic_write_text

    # atomic: a reader sees the old marker or the new one
    atomic_write_text(root / MARKER, json.dumps(payload, indent=2, sort_keys=True))


def is_complete(home: str | Path | None = None, spec: DefaultSpec | None = None) -> bool:
    """Whether a finished build of ``spec`` is cached under ``home``."""
    marker = _read_marker(default_dir(home))
    return marker is not None and marker.get("spec") == (spec or DefaultSpec()).build_key()


def synthetic_catalogue(root: Path, spec: DefaultSpec, split: str) -> RetrievalDataset:
    """The default's synthetic catalogue split, rendered under ``root/data`` if absent.

    ``split`` may join splits with "+" ("val+test"): their items and queries, in order.
    """
    import dataclasses

    from fashion_retrieval.data import load_retrieval_dataset

    parts = [load_retrieval_dataset("synthetic", root / "data", name, preset=spec.preset, products=spec.products,
                                    seed=spec.seed) for name in split.split("+")]
    if len(parts) == 1:
        return parts[0]
    return dataclasses.replace(
        parts[0], split=split, items=[it for p in parts for it in p.items],
        triplets=[t for p in parts for t in p.triplets],
    )


def _train_config(root: Path, spec: DefaultSpec, name: str, compositor: str, task: str) -> Any:
    recipe = load_recipe()
    recipe["catalogue"].update(preset=spec.preset, products=spec.products, seed=spec.seed)  # the data set's options
    recipe["tasks"]["composed"].update(generated_pairs=spec.generated_pairs,
                                       shared_value_batches=spec.shared_value_batches)
    recipe["tasks"]["crossmodal"]["generated_descriptions"] = spec.generated_descriptions
    model = ("image_encoder", "image_size", "colour_features", "mid_grid", "text_encoder", "freeze_text_encoder",
             "pretrained", "embed_dim", "modality_dropout")
    recipe["base"]["model"].update(image_encoder=spec.image_encoder, text_encoder=spec.text_encoder)
    return shopper_config(
        "default", name, compositor, task, root, recipe=recipe, steps=spec.max_steps,
        seed=spec.seed if spec.train_seed is None else spec.train_seed,
        changes={"eval_split": spec.gallery_split.split("+")[0], "batch_size": spec.batch_size, "lr": spec.lr,
                 "model": {k: getattr(spec, k) for k in model}},
        word_knowledge=spec.word_knowledge, relevance=None if spec.relevance else 0.0,
        output_dir=root / "models" / name,
    )


def _final(root: Path, name: str) -> Path:
    return root / "models" / name / "final"


def _train_one(root: Path, spec: DefaultSpec, model: tuple[str, str, str], threads: int | None = None) -> float:
    """Train one default model into ``root/models/<name>`` (a half-trained folder is removed
    first); with ``threads``, torch's CPU threads first (a training worker). Returns its seconds."""
    out = root / "models" / model[0]
    if out.exists():
        shutil.rmtree(out)  # an interrupted run: start this model again
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from fashion_retrieval.training import train

    start = time.perf_counter()
    train(_train_config(root, spec, *model))
    return time.perf_counter() - start


def train_processes(models: int, steps: int, device: Any = None) -> int:
    """How many models the build trains at once: two on a CPU with two cores or more (torch
    gains about 1.6x from a second thread on these small heads, two runs side by side 2x),
    one on an accelerator, for a single model or for short runs (starting a worker costs
    seconds). ``$FASHION_RETRIEVAL_TRAIN_PROCESSES`` overrides it."""
    import os

    from fashion_retrieval.devices import resolve_device

    forced = os.environ.get("FASHION_RETRIEVAL_TRAIN_PROCESSES", "").strip()
    if forced:
        if not forced.isdigit() or int(forced) < 1:
            raise ValueError(f"FASHION_RETRIEVAL_TRAIN_PROCESSES must be a positive integer, got {forced!r}")
        return min(int(forced), max(models, 1))
    on_cpu = resolve_device(device).type == "cpu"
    return 2 if on_cpu and _cores() >= 2 and models >= 2 and steps >= 500 else 1


def _cores() -> int:
    """The CPU cores this process may run on."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _train_models(root: Path, spec: DefaultSpec, models: list[tuple[str, str, str]], log: Log,
                  device: Any = None) -> dict[str, float]:
    """Train ``models`` (their features already cached), side by side in ``train_processes``
    spawned workers that share the machine's cores, else one after the other; seconds by name."""

    processes = train_processes(len(models), spec.max_steps, device)
    seconds: dict[str, float] = {}
    if processes == 1:
        for model in models:
            log(f"[default] {model[0]}: training {spec.max_steps} steps on cached {spec.image_encoder} features")
            seconds[model[0]] = _train_one(root, spec, model)
            log(f"[default] {model[0]}: done in {seconds[model[0]]:.0f} s")
        return seconds
    threads = max(1, _cores() // processes)
    log(f"[default] training {len(models)} models, {processes} at a time ({threads} thread(s) each), "
        f"{spec.max_steps} steps on cached {spec.image_encoder} features")
    # Longest first, so that the workers finish together: the heads that read image features,
    # with the relevance term first, then the text-only ones.
    config = {m: _train_config(root, spec, *m) for m in models}
    queue: Queue = Queue()
    for model in sorted(models, key=lambda m: (config[m].model.compositor == "text_only",
                                               config[m].relevance_weight == 0)):
        queue.put(model)
    with ThreadPoolExecutor(processes) as pool:  # each thread feeds one worker process
        for job in [pool.submit(_worker, root, spec, threads, queue, seconds, log) for _ in range(processes)]:
            job.result()  # a worker's failure is raised here
    return seconds


def _worker(root: Path, spec: DefaultSpec, threads: int, queue: Queue, seconds: dict[str, float], log: Log) -> None:
    """Run one training worker (``python -m fashion_retrieval.serving.train_worker``: a fresh
    process, no fork of one that already runs torch threads, no re-import of the caller's
    script) and hand it models from ``queue`` until none is left; its output goes where this
    process's goes, its answers (one JSON line per model) come back on its stdout."""
    import os
    import subprocess
    import sys
    from queue import Empty

    import fashion_retrieval

    package_root = str(Path(fashion_retrieval.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    command = [sys.executable, "-m", "fashion_retrieval.serving.train_worker", str(root),
               json.dumps(spec.to_dict()), str(threads)]
    proc = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        while True:
            try:
                model = queue.get_nowait()
            except Empty:
                return
            proc.stdin.write(json.dumps(model) + "\n")
            proc.stdin.flush()
            answer = proc.stdout.readline()  # when the worker has trained it
            if not answer:
                raise RuntimeError(f"training the default model {model[0]!r} failed (the worker exited with code "
                                   f"{proc.wait()}); its error is in the output above")
            seconds[model[0]] = float(json.loads(answer)["seconds"])
            log(f"[default] {model[0]}: done in {seconds[model[0]]:.0f} s")
    finally:
        proc.stdin.close()
        proc.wait()


def _prepare_features(root: Path, spec: DefaultSpec, models: list[tuple[str, str, str]], device: Any = None) -> None:
    """The caches the models' training reads, filled once up front: the frozen text encoder's
    features of every distinct text (one pass per text set: the composed models share theirs)
    and the backbone features of the catalogue's splits."""
    from fashion_retrieval.training.trainer import prepare_features

    seen = set()
    for model in models:
        config = _train_config(root, spec, *model)
        texts = (config.task, config.model.text_encoder, repr(config.model.text_kwargs))
        if texts not in seen:
            seen.add(texts)
            prepare_features(config, device)


def _retriever(
    checkpoint: Path, root: Path, spec: DefaultSpec, catalogue: Catalogue,
    home: str | Path | None = None, device: Any = None,
) -> Any:
    """A default model's Retriever over its catalogue.

    A missing index (first start, or a cache from a version that stored no features) is
    built from the backbone feature cache that training wrote for the gallery splits: heads
    only, no backbone pass per model. The index is saved with the per-item store (stamps,
    backbone features, embeddings), so catalogue picks use stored features and later starts
    only load it.
    """
    import torch

    from fashion_retrieval.checkpoints import load_model
    from fashion_retrieval.models.feature_cache import cached_image_features
    from fashion_retrieval.search.gallery_store import STORE_META

    model = load_model(str(checkpoint)).eval()
    features = None
    if not (index_dir_for(checkpoint, catalogue.key, home) / STORE_META).is_file():
        parts = [synthetic_catalogue(root, spec, name) for name in spec.gallery_split.split("+")]
        features = torch.cat([  # per split, so the cache training wrote for its eval split is reused
            cached_image_features(model, part.items, str(root / "features")) for part in parts
        ])  # (N, Dimg), aligned with the catalogue (its splits joined in order)
    return load_retriever(checkpoint, catalogue, home=home, device=device, model=model, features=features)


def default_catalogue(home: str | Path | None = None, spec: DefaultSpec | None = None) -> Catalogue:
    """The embedded default's gallery (``spec.gallery_split`` of its catalogue, rendered if
    absent) with its ground-truth queries."""
    spec = spec or DefaultSpec()
    root = default_dir(home)
    return Catalogue.from_dataset(synthetic_catalogue(root, spec, spec.gallery_split), str(root / "data"))


def default_checkpoints(
    home: str | Path | None = None, spec: DefaultSpec | None = None, *, log: Log = print
) -> dict[str, Path]:
    """The default's checkpoint folders by model name, building them first if needed."""
    spec = spec or DefaultSpec()
    root = build_default(home, spec, log=log)
    return {name: _final(root, name) for name, _, _ in spec.models()}


def build_default(
    home: str | Path | None = None, spec: DefaultSpec | None = None, *, log: Log = print,
    device: Any = None, retrievers: dict[str, Any] | None = None,
) -> Path:
    """Build (or finish building) the embedded default; returns its folder.

    Does nothing when a complete build of ``spec`` is cached. Prints progress through ``log``.
    ``retrievers``: filled with each model's Retriever (on ``device``) as it is indexed, so
    a first start serves them without loading every model a second time.
    """
    spec = spec or DefaultSpec()
    root = default_dir(home)
    marker = _read_marker(root)
    if marker is not None and marker.get("spec") == spec.build_key():
        if all((root / "models" / n / "final" / "config.json").is_file() for n, _, _ in spec.models()):
            return root
        log(f"[default] {root} lost some checkpoints; rebuilding the missing ones")
        marker = None
        (root / MARKER).unlink(missing_ok=True)
    if marker is not None:  # another spec: rebuild the models (the data keeps its own marker)
        log(f"[default] cached default in {root} was built differently; rebuilding")
        (root / MARKER).unlink(missing_ok=True)
        shutil.rmtree(root / "models", ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    log(f"[default] building the embedded default in {root} (first start only)")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    log(f"[default] stage 1/3: rendering {spec.products} products ({spec.preset} preset)")
    for split in ("train", spec.gallery_split):
        dataset = synthetic_catalogue(root, spec, split)
        log(f"[default] catalogue {split}: {len(dataset.items)} images, {len(dataset.triplets)} queries")
    catalogue = default_catalogue(home, spec)
    timings["catalogue_s"] = time.perf_counter() - t0
    todo = [m for m in spec.models() if not (_final(root, m[0]) / "config.json").is_file()]
    for name in sorted({n for n, _, _ in spec.models()} - {n for n, _, _ in todo}):
        log(f"[default] {name}: checkpoint found, skipping training")
    if todo:
        t = time.perf_counter()
        log(f"[default] stage 2/3: features of the catalogue and of every training text ({t - t0:.0f} s so far)")
        _prepare_features(root, spec, todo, device)
        timings["features_s"] = time.perf_counter() - t
        t = time.perf_counter()
        log(f"[default] stage 3/3: training {', '.join(n for n, _, _ in todo)} ({t - t0:.0f} s so far)")
        timings.update({f"{name}_train_s": s for name, s in _train_models(root, spec, todo, log, device).items()})
        timings["training_s"] = time.perf_counter() - t
    for name, _, _ in spec.models():
        t_index = time.perf_counter()
        log(f"[default] {name}: indexing {len(catalogue.items)} gallery images")
        retriever = _retriever(_final(root, name), root, spec, catalogue, home, device)
        if retrievers is not None:
            retrievers[name] = retriever
        timings[f"{name}_index_s"] = time.perf_counter() - t_index
        log(f"[default] {name}: indexed in {timings[f'{name}_index_s']:.1f} s")
    timings["total_s"] = time.perf_counter() - t0
    _write_marker(root, {"spec": spec.build_key(), "timings": timings, "built_at": time.time()})
    log(f"[default] ready in {timings['total_s']:.0f} s; cached in {root}")
    return root


def load_default(
    home: str | Path | None = None, spec: DefaultSpec | None = None, *, log: Log = print,
    device: str | None = None,
) -> Service:
    """The embedded default's Retrievers over its own catalogue, building them first if
    needed; the models run on ``device`` (default: ``cuda`` when available, else ``cpu``)."""
    from fashion_retrieval.devices import resolve_device

    spec = spec or DefaultSpec()
    dev = resolve_device(device)  # an unavailable device fails before the build
    built: dict[str, Any] = {}  # a first start: the retrievers the build indexed, on dev
    root = build_default(home, spec, log=log, device=dev, retrievers=built)
    t0 = time.perf_counter()
    catalogue = default_catalogue(home, spec)
    models = {name: built.get(name) or _retriever(root / "models" / name / "final", root, spec, catalogue, home, dev)
              for name, _, _ in spec.models()}
    marker = _read_marker(default_dir(home)) or {}
    timings = dict(marker.get("timings", {}), load_s=time.perf_counter() - t0)
    log(f"[default] loaded {len(models)} models in {timings['load_s']:.1f} s")
    return Service(models, catalogue, default_dir(home), timings)
