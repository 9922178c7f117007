"""Property-based tests (hypothesis) of tokenisation, caption parsing and query construction.

Bounded: a fixed number of examples per property, no deadline flakiness, well under a
minute in all. Each property records how many examples it checked for the reliability table.
"""

from __future__ import annotations

import json
import string
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.reliability import record
from fashion_retrieval.data.fashion200k import clean_caption, modification_text, word_difference
from fashion_retrieval.data.fashioniq import CAPTION_MODES, load_fashioniq
from fashion_retrieval.models.vocab import MAX_WORDS, PAD, UNK, Vocabulary, tokenize

EXAMPLES = 150
BOUNDED = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
any_text = st.text(max_size=300)  # every Unicode category: emoji, scripts, controls, surrogates excluded
ascii_words = st.lists(st.text(string.ascii_lowercase, min_size=1, max_size=8), min_size=0, max_size=8)


def _done(case: str, via: str, detail: str = "") -> None:
    record("properties", case, via, f"held for {EXAMPLES} generated examples{detail}")


# ---------------------------------------------------------------- tokenisation
@BOUNDED
@given(any_text)
def _tokenize_is_total_bounded_and_idempotent(text):
    words = tokenize(text)
    assert isinstance(words, list) and len(words) <= MAX_WORDS
    assert all(w and not any(c.isspace() for c in w) for w in words)
    assert tokenize(" ".join(words)) == words  # tokens re-tokenise to themselves


def test_tokenize_is_total_bounded_and_idempotent():
    _tokenize_is_total_bounded_and_idempotent()
    _done("tokenize: never raises, <= 128 words, no blanks, idempotent", "models/vocab.tokenize")


@BOUNDED
@given(ascii_words, st.sampled_from([str.upper, str.title, lambda s: f"  {s}!! "]))
def _tokenize_ignores_case_and_punctuation(words, dress):
    text = " ".join(words)
    assert tokenize(dress(text)) == tokenize(text) == words[:MAX_WORDS]


def test_tokenize_ignores_case_and_punctuation():
    _tokenize_ignores_case_and_punctuation()
    _done("tokenize: case and punctuation do not change words", "models/vocab.tokenize")


@BOUNDED
@given(st.lists(any_text, min_size=1, max_size=6), any_text)
def _vocabulary_encodes_known_words_and_round_trips(texts, other):
    vocab = Vocabulary.build(texts)
    assert vocab.words[:2] == [PAD, UNK]
    for t in texts:
        ids = vocab.encode(t)
        assert ids and all(1 <= i < len(vocab) for i in ids)
        assert (vocab.unk_id not in ids) or not tokenize(t)  # every training word is known
    assert vocab.encode(other)  # any text gives at least <unk>
    assert Vocabulary.from_json(vocab.to_json()).words == vocab.words


def test_vocabulary_encodes_known_words_and_round_trips():
    _vocabulary_encodes_known_words_and_round_trips()
    _done("Vocabulary: known words never <unk>, any text encodes, JSON round trip", "models/vocab.Vocabulary")


# ---------------------------------------------------------------- caption parsing
@BOUNDED
@given(any_text)
def _clean_caption_is_idempotent_and_clean(caption):
    cleaned = clean_caption(caption)
    assert clean_caption(cleaned) == cleaned
    assert not any(c in string.punctuation for c in cleaned)
    assert "  " not in cleaned and cleaned == cleaned.strip()


def test_clean_caption_is_idempotent_and_clean():
    _clean_caption_is_idempotent_and_clean()
    _done("clean_caption: idempotent, no punctuation, single spaces", "fashion200k.clean_caption")


@BOUNDED
@given(ascii_words, ascii_words)
def _word_difference_and_query_text(source_words, target_words):
    source, target = " ".join(source_words), " ".join(target_words)
    diff = word_difference(source, target)
    if diff is None:
        assert set(source_words) <= set(target_words) or set(target_words) <= set(source_words)
        assert modification_text(source, target) is None
        return
    x, y = diff
    assert x in source_words and x not in target_words and y in target_words and y not in source_words
    assert x == next(w for w in source_words if w not in target_words)  # the first one
    assert word_difference(target, source) == (y, x)  # symmetric
    text = modification_text(source, target)
    assert text == f"replace {x} with {y}" and tokenize(text) == ["replace", x, "with", y]


def test_word_difference_and_query_text():
    _word_difference_and_query_text()
    _done("word_difference / 'replace X with Y': first missing words, symmetric, parseable",
          "fashion200k.modification_text")


# ---------------------------------------------------------------- FashionIQ query construction
captions = st.lists(st.text(max_size=40), min_size=1, max_size=3)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(captions)
def _fashioniq_join_builds_c1_and_c2(tmp_path_factory, caps):
    root = _tiny_fashioniq(tmp_path_factory.mktemp("fiq"), caps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_fashioniq(root, "val", caption_mode="join")
        separate = load_fashioniq(root, "val", caption_mode="separate")
    kept = [c.strip() for c in caps if c.strip()]
    if not kept:
        assert data.triplets == [] and data.skipped["no_caption"] == 1
        return
    assert [t.text for t in data.triplets] == [" and ".join(kept)] == CAPTION_MODES["join"](kept)
    assert [t.text for t in separate.triplets] == kept
    assert "empty_caption" not in data.skipped  # kept with the other caption, counted apart
    assert data.meta["one_caption_empty"] == (1 if len(kept) < len(caps) else 0)


def _tiny_fashioniq(root: Path, caps: list[str]) -> Path:
    """Two stand-in images, one annotation with ``caps`` (any Unicode, through JSON)."""
    for d in ("images", "captions", "image_splits"):
        (root / d).mkdir()
    for name in ("a", "b"):
        (root / "images" / f"{name}.jpg").write_bytes(b"x")
    (root / "image_splits" / "split.dress.val.json").write_text(json.dumps(["a", "b"]))
    (root / "captions" / "cap.dress.val.json").write_text(
        json.dumps([{"candidate": "a", "target": "b", "captions": caps}]), encoding="utf-8")
    return root


def test_fashioniq_join_builds_c1_and_c2(tmp_path_factory):
    _fashioniq_join_builds_c1_and_c2(tmp_path_factory)
    record("properties", "FashionIQ query = 'c1 and c2' (blank captions dropped and counted)",
           "load_fashioniq caption_mode=join/separate", "held for 40 generated caption lists")


# ---------------------------------------------------------------- the report's README writer
# No "\r": files are read with universal newlines, as editors and git do.
readme_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=200).filter(
    lambda t: "<!--" not in t)
block_text = st.text(string.ascii_letters + string.digits + " |*`-\n", max_size=80)


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(readme_text, readme_text, block_text, block_text)
def _readme_update_keeps_the_rest(tmp_path_factory, before, after, block1, block2):
    from benchmarks.reliability.report import END, HEADING, START, update_readme

    path = tmp_path_factory.mktemp("readme") / "README.md"
    path.write_text(before, encoding="utf-8")
    update_readme(path, block1)
    first = path.read_text(encoding="utf-8")
    assert first.startswith(before.rstrip("\n")) and first.count(START) == 1 and HEADING in first
    path.write_text(first + after, encoding="utf-8")  # text after the section must survive
    update_readme(path, block2)
    second = path.read_text(encoding="utf-8")
    assert second == first.replace(f"{START}\n{block1}\n{END}", f"{START}\n{block2}\n{END}") + after
    update_readme(path, block2)
    assert path.read_text(encoding="utf-8") == second  # idempotent


def test_readme_update_keeps_the_rest(tmp_path_factory):
    _readme_update_keeps_the_rest(tmp_path_factory)
    record("properties", "README section writer: appends once, replaces only between markers, idempotent",
           "reliability.report.update_readme", "held for 30 generated READMEs")
