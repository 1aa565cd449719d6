"""`sqbert-fast convert --from-bert`: every BERT head with a SqueezeBERT counterpart converts into a
checkpoint that transformers' SqueezeBert class and ours both load with no missing or unexpected
tensor, and that computes what the BERT computes. Errors are one line, never a traceback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import torch
import transformers
from hf_utils import SMALL_CONFIGS, hf_config, randomize_, save_hf

import sqbert_fast as sqf
import sqbert_fast.cli
from sqbert_fast.convert import ConversionError, convert_bert

TOL = 1e-4
BATCH, SEQ = 3, 11

# the BERT classes with a SqueezeBERT counterpart: the same name with "Squeeze" in front, but for
# BertForPreTraining (a masked LM: its next-sentence head is dropped)
BERT_CLASSES = ("BertModel", "BertForPreTraining", "BertForMaskedLM", "BertForSequenceClassification",
                "BertForMultipleChoice", "BertForTokenClassification", "BertForQuestionAnswering")


def target_of(bert_name: str) -> str:
    return "SqueezeBertForMaskedLM" if bert_name == "BertForPreTraining" else "Squeeze" + bert_name


def bert_config(**kw):
    d = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=64, type_vocab_size=2, hidden_act="gelu")
    d.update(kw)
    if "id2label" not in d:
        d.setdefault("num_labels", 3)
    return transformers.BertConfig(**d)


def make_bert(class_name: str, path, seed: int = 0, **kw):
    bert = randomize_(getattr(transformers, class_name)(bert_config(**kw)), seed).eval()
    bert.save_pretrained(path)
    return bert


def inputs(multiple_choice: bool = False):
    g = torch.Generator().manual_seed(1)
    shape = (BATCH, 2, SEQ) if multiple_choice else (BATCH, SEQ)
    ids = torch.randint(1, 97, shape, generator=g)
    types = torch.randint(0, 2, shape, generator=g)
    mask = torch.ones(shape, dtype=torch.long)
    flat = mask.view(-1, SEQ)
    for i in range(flat.shape[0]):
        flat[i, SEQ - (i % 4) * 2:] = 0  # right padding of 0, 2, 4, 6 tokens
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


def assert_close(ours, want, mask=None, what=""):
    """max |ours - want| <= TOL over the positions the mask keeps (padded positions excluded)."""
    assert ours.shape == want.shape, what
    if mask is not None:
        keep = mask.bool()
        while keep.dim() < ours.dim():
            keep = keep.unsqueeze(-1)
        keep = keep.expand_as(ours)
        ours, want = ours[keep], want[keep]
    diff = (ours.float() - want.float()).abs().max().item()
    assert diff <= TOL, f"{what}: max diff {diff}"


def compare(bert_name: str, bert, model, x):
    """model (a SqueezeBERT, transformers' or ours) against the BERT, on the same inputs."""
    with torch.no_grad():
        want = bert(**x, output_hidden_states=True)
        got = model(**x, output_hidden_states=True)
    mask = x["attention_mask"].reshape(-1, SEQ)
    assert len(got.hidden_states) == len(want.hidden_states)
    for i, (a, b) in enumerate(zip(got.hidden_states, want.hidden_states)):
        assert_close(a.reshape(-1, SEQ, a.shape[-1]), b.reshape(-1, SEQ, b.shape[-1]), mask, f"hidden_states[{i}]")
    if bert_name == "BertModel":
        assert_close(got.last_hidden_state, want.last_hidden_state, mask, "last_hidden_state")
        assert_close(got.pooler_output, want.pooler_output, None, "pooler_output")
    elif bert_name == "BertForPreTraining":
        assert_close(got.logits, want.prediction_logits, mask, "logits")
    elif bert_name in ("BertForMaskedLM", "BertForTokenClassification"):
        assert_close(got.logits, want.logits, mask, "logits")
    elif bert_name in ("BertForSequenceClassification", "BertForMultipleChoice"):
        assert_close(got.logits, want.logits, None, "logits")
    else:
        assert_close(got.start_logits, want.start_logits, mask, "start_logits")
        assert_close(got.end_logits, want.end_logits, mask, "end_logits")


def no_loading_problems(info):
    return {k: list(info[k]) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")} == {
        "missing_keys": [], "unexpected_keys": [], "mismatched_keys": []}


@pytest.mark.parametrize("bert_name", BERT_CLASSES)
def test_round_trip_through_the_cli(bert_name, tmp_path, capsys):
    target = target_of(bert_name)
    qa = bert_name == "BertForQuestionAnswering"  # start and end logits: two labels
    bert = make_bert(bert_name, tmp_path / "bert", **(dict(num_labels=2) if qa else {}))
    has_pooler = getattr(bert, "bert", bert).pooler is not None
    assert sqf.cli.main(["convert", "--from-bert", str(tmp_path / "bert"), str(tmp_path / "sq")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {target} checkpoint" in out
    assert ("zero pooler" in out) == (not has_pooler)
    assert ("next-sentence" in out) == (bert_name == "BertForPreTraining")

    cfg = json.loads((tmp_path / "sq" / "config.json").read_text())
    assert cfg["architectures"] == [target] and cfg["model_type"] == "squeezebert"
    x = inputs(multiple_choice=bert_name == "BertForMultipleChoice")

    hf, info = getattr(transformers, target).from_pretrained(tmp_path / "sq", output_loading_info=True)
    assert no_loading_problems(info), info
    compare(bert_name, bert, hf.eval(), x)
    pooler = (hf if target == "SqueezeBertModel" else hf.transformer).pooler.dense
    if not has_pooler:  # the placeholder is zeros, not numbers that look trained
        assert not pooler.weight.any() and not pooler.bias.any()
    else:
        src = bert.pooler.dense if bert_name == "BertModel" else bert.bert.pooler.dense
        assert torch.equal(pooler.weight, src.weight) and torch.equal(pooler.bias, src.bias)

    for backend in ("reference", "cpu"):
        ours, info = getattr(sqf, target).from_pretrained(tmp_path / "sq", backend=backend, output_loading_info=True)
        assert no_loading_problems(info), info
        compare(bert_name, bert, ours, x)


def test_python_function_and_pytorch_model_bin(tmp_path):
    """convert_bert() directly, from a pytorch_model.bin whose config keeps labels: id2label carries over."""
    bert = make_bert("BertForSequenceClassification", tmp_path / "bert", seed=3,
                     id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    (tmp_path / "bert" / "model.safetensors").unlink()
    torch.save(bert.state_dict(), tmp_path / "bert" / "pytorch_model.bin")
    assert convert_bert(tmp_path / "bert", tmp_path / "sq") == str(tmp_path / "sq")
    ours = sqf.SqueezeBertForSequenceClassification.from_pretrained(tmp_path / "sq", backend="reference")
    assert ours.config.id2label == {0: "neg", 1: "pos"} and ours.config.num_labels == 2
    compare("BertForSequenceClassification", bert, ours, inputs())


def test_tokenizer_files_are_copied(tmp_path):
    make_bert("BertModel", tmp_path / "bert")
    (tmp_path / "bert" / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n")
    convert_bert(tmp_path / "bert", tmp_path / "sq")
    assert (tmp_path / "sq" / "vocab.txt").read_text() == (tmp_path / "bert" / "vocab.txt").read_text()


def test_classifier_without_architectures_needs_head(tmp_path, capsys):
    """A config that names no architecture: a classifier could be any of three heads, so --head decides."""
    bert = make_bert("BertForTokenClassification", tmp_path / "bert")
    cfg_path = tmp_path / "bert" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["architectures"]
    cfg_path.write_text(json.dumps(cfg))
    assert sqf.cli.main(["convert", "--from-bert", str(tmp_path / "bert"), str(tmp_path / "sq")]) != 0
    assert "--head" in capsys.readouterr().err
    assert not (tmp_path / "sq").exists()
    assert sqf.cli.main(["convert", "--head", "token-classification", "--from-bert", str(tmp_path / "bert"),
                         str(tmp_path / "sq")]) == 0
    hf, info = transformers.SqueezeBertForTokenClassification.from_pretrained(tmp_path / "sq", output_loading_info=True)
    assert no_loading_problems(info)
    compare("BertForTokenClassification", bert, hf.eval(), inputs())


def test_head_model_keeps_only_the_encoder(tmp_path, capsys):
    bert = make_bert("BertForPreTraining", tmp_path / "bert")
    assert sqf.cli.main(["convert", "--head", "model", "--from-bert", str(tmp_path / "bert"), str(tmp_path / "sq")]) == 0
    assert "dropped" in capsys.readouterr().out
    hf, info = transformers.SqueezeBertModel.from_pretrained(tmp_path / "sq", output_loading_info=True)
    assert no_loading_problems(info)
    compare("BertModel", bert.bert, hf.eval(), inputs())


def test_bert_model_without_pooler(tmp_path, capsys):
    """BertModel(add_pooling_layer=False): the zero pooler makes pooler_output exactly 0, not random."""
    bert = randomize_(transformers.BertModel(bert_config(), add_pooling_layer=False)).eval()
    bert.save_pretrained(tmp_path / "bert")
    assert sqf.cli.main(["convert", "--from-bert", str(tmp_path / "bert"), str(tmp_path / "sq")]) == 0
    assert "zero pooler" in capsys.readouterr().out
    x = inputs()
    for model, info in (transformers.SqueezeBertModel.from_pretrained(tmp_path / "sq", output_loading_info=True),
                        sqf.SqueezeBertModel.from_pretrained(tmp_path / "sq", backend="cpu", output_loading_info=True)):
        assert no_loading_problems(info), info
        with torch.no_grad():
            got, want = model.eval()(**x), bert(**x)
        assert_close(got.last_hidden_state, want.last_hidden_state, x["attention_mask"], "last_hidden_state")
        assert not got.pooler_output.any()


def test_converting_into_the_source_directory_is_refused(tmp_path, capsys):
    make_bert("BertModel", tmp_path / "bert")
    before = {p.name: p.read_bytes() for p in (tmp_path / "bert").iterdir()}
    assert sqf.cli.main(["convert", "--from-bert", str(tmp_path / "bert"), str(tmp_path / "bert" / ".")]) != 0
    assert "source directory" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "bert").iterdir()} == before


def _untied_mlm(path):
    bert = transformers.BertForMaskedLM(bert_config(tie_word_embeddings=False))
    randomize_(bert).save_pretrained(path)


def _unknown_tensor(path):
    from safetensors.torch import load_file, save_file

    make_bert("BertModel", path)
    state = load_file(str(path / "model.safetensors"))
    state["adapter.weight"] = torch.zeros(2, 2)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})


def _no_weights(path):
    make_bert("BertModel", path)
    (path / "model.safetensors").unlink()


def _bad_json(path):
    path.mkdir()
    (path / "config.json").write_text("{not json")


ERROR_CASES = {
    "missing source": (lambda p: None, "is not a directory"),
    "no config": (lambda p: p.mkdir(), "no config.json"),
    "bad json": (_bad_json, "not valid JSON"),
    "squeezebert config": (lambda p: save_hf("SqueezeBertModel", hf_config(**SMALL_CONFIGS["h64_d16_mixed"]), p),
                           "expected a BERT config"),
    "next sentence prediction": (lambda p: make_bert("BertForNextSentencePrediction", p),
                                 "BertForNextSentencePrediction cannot be converted"),
    "causal lm": (lambda p: make_bert("BertLMHeadModel", p, is_decoder=True), "decoder"),
    "layer_norm_eps": (lambda p: make_bert("BertModel", p, layer_norm_eps=1e-5), "layer_norm_eps"),
    "relative positions": (lambda p: make_bert("BertModel", p, position_embedding_type="relative_key"),
                           "absolute position embeddings"),
    "untied decoder": (_untied_mlm, "not tied"),
    "unknown tensor": (_unknown_tensor, "'adapter.weight' has no place"),
    "no weights": (_no_weights, "no model.safetensors"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_are_one_line_not_a_traceback(case, tmp_path, capsys):
    make, message = ERROR_CASES[case]
    make(tmp_path / "src")
    capsys.readouterr()  # transformers' own progress output while the source was written
    rc = sqf.cli.main(["convert", "--from-bert", str(tmp_path / "src"), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc != 0
    assert err.startswith("sqbert-fast convert: error: ") and message in err, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConversionError if case not in ("no weights",) else OSError, match=re.escape(message)):
        convert_bert(tmp_path / "src", tmp_path / "out")


def test_console_script_error_has_no_traceback(tmp_path):
    exe = shutil.which("sqbert-fast")
    if exe is None:
        pytest.skip("the sqbert-fast console script is not installed")
    r = subprocess.run([exe, "convert", "--from-bert", str(tmp_path / "missing"), str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode != 0
    assert r.stderr.startswith("sqbert-fast convert: error: ") and "Traceback" not in r.stderr, r.stderr
