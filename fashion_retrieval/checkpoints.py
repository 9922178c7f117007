"""Checkpoints: save (atomically, with a model card), load strictly, push to the Hugging Face Hub.

A checkpoint is a folder written by ``PyTorchModelHubMixin.save_pretrained``:
``config.json`` (the :class:`ModelConfig`, LSTM vocabulary included), ``model.safetensors``
and a ``README.md`` model card whose metadata holds the evaluation results as a
``model-index``; plus ``train_config.json`` and ``metrics.json`` when given.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .io_utils import atomic_write_json, swap_dir_into_place

CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
WORDS_FILE = "word_knowledge.json"  # the speller's and thesaurus's training words, beside config.json
_METRIC = re.compile(r"^(R@|P@|mAP|recall|precision)", re.IGNORECASE)  # what goes in the model-index


def save_checkpoint(
    model, out_dir: str | Path, *, train_config: dict | None = None,
    metrics: dict | None = None, dataset_name: str | None = None,
) -> Path:
    """Write ``model`` as a checkpoint folder at ``out_dir`` and return its path.

    Everything is written to a temporary sibling folder first and then renamed into place,
    so an interrupted save leaves the previous checkpoint at ``out_dir`` intact.
    ``metrics`` is either ``{"R@10": 42.5, ...}`` or an evaluation JSON
    (``{"dataset", "split", "protocol", "recall": {...}}``); recall is in percent.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        config = json.loads((tmp / CONFIG_FILE).read_text(encoding="utf-8"))
        words = config["text_kwargs"].pop("known_words", None)
        if words is not None:  # the word knowledge keeps its words in its own file
            atomic_write_json(tmp / WORDS_FILE, {"known_words": words})
            atomic_write_json(tmp / CONFIG_FILE, config)
        if train_config is not None:
            atomic_write_json(tmp / "train_config.json", train_config)
        if metrics is not None:
            atomic_write_json(tmp / "metrics.json", metrics)
        card = build_model_card(model.config, metrics=metrics, dataset_name=dataset_name,
                                train_config=train_config)
        card.save(str(tmp / CARD_FILE))
        swap_dir_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _recall_table(metrics: dict | None) -> tuple[dict[str, float], dict[str, Any]]:
    """(recall values, context) from a flat ``{"R@K": v}`` dict or an evaluation JSON."""
    if not metrics:
        return {}, {}
    recall = metrics.get("recall", metrics)
    values = {
        k: float(v) for k, v in recall.items()
        if _METRIC.match(k) and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return values, {k: metrics[k] for k in ("dataset", "split", "protocol") if k in metrics}


def _best_note(metrics: dict) -> str:
    """", the best of the run by <metric> (kept as best/)" when ``metrics`` records a best checkpoint."""
    best = metrics.get("best")
    if not isinstance(best, dict) or best.get("step") != metrics.get("step"):
        return ""
    return f", the run's best validation {best.get('metric')} ({best.get('value', 0):.2f})"


def build_model_card(config, *, metrics: dict | None = None, dataset_name: str | None = None,
                     train_config: dict | None = None):
    """A ``huggingface_hub.ModelCard``: description, training data, results (as model-index), usage, limits."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    recall, ctx = _recall_table(metrics)
    dataset = dataset_name or ctx.get("dataset") or (train_config or {}).get("dataset") or "unknown"
    name = f"{config.compositor}-{config.image_encoder}-{config.text_encoder}".replace(":", "-").replace("/", "-")
    results = [
        EvalResult(task_type="image-retrieval", task_name="Composed image retrieval",
                   dataset_type=str(dataset), dataset_name=str(dataset),
                   dataset_split=ctx.get("split"), metric_type=k.lower(), metric_name=k,
                   metric_value=v)
        for k, v in recall.items()
    ]
    data = ModelCardData(
        library_name="fashion_retrieval", license="apache-2.0", model_name=name,
        tags=["composed-image-retrieval", "fashion", config.compositor],
        datasets=[str(dataset)] if dataset != "unknown" else None,
        eval_results=results or None, pipeline_tag="image-feature-extraction",
    )
    rows = "\n".join(f"| {k} | {v:.2f} |" for k, v in recall.items())
    table = f"| metric | value (%) |\n|---|---|\n{rows}" if rows else "No evaluation results were recorded."
    data_line = f"{dataset} (protocol {ctx['protocol']}, split {ctx.get('split')})" if ctx.get("protocol") else str(dataset)
    if isinstance((metrics or {}).get("step"), int):
        table += f"\n\nMeasured at training step {metrics['step']}" + _best_note(metrics) + "."
    body = f"""
# {name}

A composed image retrieval model for fashion: a query is an image plus a text saying what
should change ("like this, but blue"), and the model ranks catalogue images by how well they
match. Image encoder `{config.image_encoder}` (frozen: {config.freeze_image_encoder}), text
encoder `{config.text_encoder}`, compositor `{config.compositor}`, {config.embed_dim}-d
L2-normalised embeddings. Missing inputs use learned null embeddings, so the same model also
answers text-only and image-only queries.

## Training data

{data_line}.

## Evaluation

{table}

## How to load

```python
from fashion_retrieval.checkpoints import load_model
model = load_model("path/or/repo-id")
query = model.encode_query(images, ["blue with long sleeves"])   # (B, {config.embed_dim})
gallery = model.encode_target(images)                            # (N, {config.embed_dim})
```

## Limitations

Trained on the data set above only: results do not carry over to other catalogues or
photography styles without fine-tuning. Synthetic-catalogue results measure the pipeline,
not real-world quality. The text encoder understands only the vocabulary it was trained on
(an LSTM maps unknown words to `<unk>`).
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def load_model(path_or_repo_id: str | Path, revision: str | None = None, map_location: str = "cpu"):
    """Load a checkpoint folder or Hub repo strictly; bad or missing files raise errors naming them."""
    from .models.retrieval import RetrievalModel

    path = Path(path_or_repo_id)
    if path.is_dir():
        config = _check_folder(path)
        if (path / WORDS_FILE).is_file():  # older checkpoints keep the words in config.json
            words = json.loads((path / WORDS_FILE).read_text(encoding="utf-8"))["known_words"]
            config["text_kwargs"] = {**config.get("text_kwargs", {}), "known_words": words}
        return RetrievalModel.from_pretrained(str(path), map_location=map_location, config=config)
    if path.exists() or str(path_or_repo_id).startswith((".", "/", "~")) or str(path_or_repo_id).count("/") > 1:
        raise FileNotFoundError(f"checkpoint folder {path} does not exist (or is not a folder)")
    try:
        return RetrievalModel.from_pretrained(str(path_or_repo_id), revision=revision, map_location=map_location,
                                              **_hub_words(str(path_or_repo_id), revision))
    except (OSError, ConnectionError) as e:
        raise OSError(
            f"could not download checkpoint {path_or_repo_id!r} from the Hugging Face Hub "
            f"({type(e).__name__}: {e}); check the repo id and the network, or give a local folder"
        ) from e


def _hub_words(repo_id: str, revision: str | None) -> dict[str, Any]:
    """``{"config": ...}``: a Hub checkpoint's config.json with its word_knowledge.json words ({} without)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError

    try:
        words = json.loads(Path(hf_hub_download(repo_id, WORDS_FILE, revision=revision)).read_text())["known_words"]
    except (EntryNotFoundError, FileNotFoundError):  # a checkpoint without word knowledge
        return {}
    config = json.loads(Path(hf_hub_download(repo_id, CONFIG_FILE, revision=revision)).read_text())
    return {"config": {**config, "text_kwargs": {**config.get("text_kwargs", {}), "known_words": words}}}


def _check_folder(path: Path) -> dict[str, Any]:
    """``path``'s config.json; a clear error if it lacks a valid one or model.safetensors."""
    from .models.config import MODEL_TYPE, ModelConfig

    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} is missing: {path} is not a checkpoint folder "
                                "(write one with fashion_retrieval.checkpoints.save_checkpoint)")
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{config_file} is not valid JSON ({e}); restore it from the original checkpoint") from e
    if not isinstance(raw, dict) or raw.get("model_type") != MODEL_TYPE:
        kind = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(
            f"{config_file} describes a {kind!r} model, not a {MODEL_TYPE} RetrievalModel: load it with "
            "its own library (e.g. transformers.AutoModel), or point to a folder written by "
            "fashion_retrieval.checkpoints.save_checkpoint"
        )
    try:
        ModelConfig.from_dict(raw)
    except ValueError as e:
        raise ValueError(f"{config_file}: {e}") from e
    if not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{path / WEIGHTS_FILE} is missing: the checkpoint has no weights "
                                "(copy it again or re-save the model)")
    return raw


def push_to_hub(
    out_dir: str | Path, repo_id: str, token: str | None = None, private: bool = False,
    commit_message: str = "Upload fashion_retrieval checkpoint",
) -> str:
    """Upload a checkpoint folder to the Hub model repo ``repo_id`` (created if needed); returns the commit URL."""
    from huggingface_hub import HfApi

    out_dir = Path(out_dir)
    _check_folder(out_dir)
    api = HfApi(token=token)
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(out_dir), repo_id=repo_id, repo_type="model",
                             commit_message=commit_message)
    return str(getattr(info, "commit_url", info))
