"""models/bert.py: the plain-torch BERT equals transformers' BertModel bit for bit, its tokenizer
gives the same ids, and a start that loads MiniLM models never imports transformers' modeling code."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import top_modules_after_loading

from fashion_retrieval.models.bert import (
    BertEncoder,
    BertSettings,
    WordPieceTokenizer,
    is_bert_folder,
)
from fashion_retrieval.models.text_encoders import build_text_encoder, minilm_path

TEXTS = [
    "Black instead of white and is slim fit and same style but is tighter",
    "like this but blue, with long sleeves",
    "red",
    "",
    "Café crème, naïve résumé",
    "红色 dress 🙂",
    "dress\tshirt\nnew   lines",
    "word " * 200,  # truncated at 64 tokens
]


@pytest.fixture(scope="module")
def pair():
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_path()
    reference = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    ours = BertEncoder.from_folder(folder, BertSettings.read(folder)).eval()
    return reference, tokenizer, ours, WordPieceTokenizer(folder, 64)


@pytest.mark.parametrize("texts", [TEXTS, ["a blue dress", "a red shirt"]], ids=["padded", "unpadded"])
def test_outputs_equal_bertmodel_bit_for_bit(pair, texts):
    reference, tokenizer, ours, wordpiece = pair
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    ids, mask = wordpiece(texts)
    assert torch.equal(ids, batch["input_ids"]) and torch.equal(mask, batch["attention_mask"])
    assert ids.shape[1] <= 64
    with torch.inference_mode():
        assert torch.equal(ours(ids, mask), reference(**batch).last_hidden_state)


def test_tokenizer_answers_the_word_questions_as_transformers(pair):
    _, tokenizer, _, wordpiece = pair
    assert wordpiece.get_vocab() == tokenizer.get_vocab()
    assert wordpiece.unk_token == tokenizer.unk_token == "[UNK]"
    for word in ("tartan", "Crimson", "sleeveless", "🙂", "über", ""):
        assert wordpiece.tokenize(word) == tokenizer.tokenize(word)


def test_same_weight_names_and_fingerprint_as_bertmodel(pair):
    """Checkpoints and the text-feature cache keys (a fingerprint over the state dict) carry over."""
    from fashion_retrieval.models.feature_cache import weights_fingerprint

    reference, _, ours, _ = pair
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert weights_fingerprint(ours) == weights_fingerprint(reference)


def test_fine_tuning_trains_with_dropout(pair):
    _, _, ours, wordpiece = pair
    model = BertEncoder.from_folder(minilm_path(), ours.settings).train()
    ids, mask = wordpiece(["a red dress", "a long blue skirt with pleats"])
    torch.manual_seed(0)
    first = model(ids, mask)
    first.pow(2).mean().backward()
    assert model.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert model.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    assert not torch.equal(first.detach(), model(ids, mask).detach())  # dropout is on in training
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids, mask), model(ids, mask))


def _tiny_bert_folder(tmp_path, prefix: str = "", **changes):
    """A small BERT folder: the packaged tokenizer files, a config and random weights."""
    import shutil

    from safetensors.torch import save_file

    folder = tmp_path / "tiny-bert"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(minilm_path() / name, folder / name)
    config = {"model_type": "bert", "hidden_act": "gelu", "vocab_size": 30522, "hidden_size": 32,
              "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
              "max_position_embeddings": 128, **changes}
    (folder / "config.json").write_text(json.dumps(config))
    settings = BertSettings.read(folder)
    if settings is not None:
        torch.manual_seed(0)
        state = {prefix + k: v for k, v in BertEncoder.build(settings).state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
    return folder


def test_a_bert_folder_with_prefixed_weights_loads(tmp_path):
    folder = _tiny_bert_folder(tmp_path, prefix="bert.")
    enc = build_text_encoder(f"hf:{folder}")
    assert enc.output_dim == 32
    with torch.no_grad():
        assert enc(["a red dress", "blue"]).shape == (2, 32)


def test_unfitting_weights_name_the_file(tmp_path):
    from safetensors.torch import save_file

    folder = _tiny_bert_folder(tmp_path)
    save_file({"embeddings.word_embeddings.weight": torch.zeros(4, 4)}, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match="model.safetensors does not fit"):
        BertEncoder.from_folder(folder, BertSettings.read(folder))
    (folder / "model.safetensors").unlink()
    with pytest.raises(OSError, match="model.safetensors is missing"):
        BertEncoder.from_folder(folder, BertSettings.read(folder))


@pytest.mark.parametrize("change", [{"hidden_act": "relu"}, {"position_embedding_type": "relative_key"},
                                    {"model_type": "roberta"}, {"is_decoder": True}])
def test_other_architectures_are_left_to_transformers(tmp_path, change):
    assert is_bert_folder(_tiny_bert_folder(tmp_path, **change)) is False


def test_loading_a_minilm_checkpoint_imports_no_transformers(tmp_path):
    """The warm start's models load without transformers (its modeling code costs ~2 s)."""
    from fashion_retrieval.checkpoints import save_checkpoint
    from fashion_retrieval.models import ModelConfig, RetrievalModel

    model = RetrievalModel(ModelConfig(image_encoder="tiny_cnn", text_encoder="minilm", pretrained=False,
                                       embed_dim=16, freeze_text_encoder=True))
    save_checkpoint(model, tmp_path / "ck")
    assert top_modules_after_loading(tmp_path / "ck", "m.encode_text(['a red dress'])", ("transformers",)) == []
