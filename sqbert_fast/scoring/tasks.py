"""The five scoring tasks: what each reads, which model class runs it, and what it writes per row.

A task turns a row's fields into tokenizer input (a text, or a pair), checks the encoding (fill-mask
needs a [MASK]), runs the model on a padded batch and turns the outputs into one result dict per row.
Every result field has a fixed Arrow type (``schema``), so Parquet chunks written at different times
share one schema and CSV has a fixed header.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["POOLINGS", "TASKS", "TaskOptions", "check_positive_int", "make_task"]

POOLINGS = ("mean", "cls", "pooler")


def check_positive_int(name: str, value) -> int:
    """``value`` as an int >= 1, or a ValueError naming the option (its ``--flag`` spelling too)."""
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
        raise ValueError(f"{name} (--{name.replace('_', '-')}) must be a whole number >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} (--{name.replace('_', '-')}) must be >= 1, got {value}")
    return int(value)


@dataclass
class TaskOptions:
    text_field: str = "text"
    pair_field: str | None = None
    question_field: str = "question"
    context_field: str = "context"
    all_scores: bool = False          # classify: also every label's probability
    top_k: int = 5                    # fill-mask: predictions per [MASK]
    pooling: str = "mean"             # embed: mean | cls | pooler
    normalize: bool = False           # embed: L2-normalise
    max_answer_tokens: int = 30       # qa: longest answer span

    def __post_init__(self):
        self.top_k = check_positive_int("top_k", self.top_k)
        self.max_answer_tokens = check_positive_int("max_answer_tokens", self.max_answer_tokens)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling (--pooling) must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")


class Task:
    name = "?"
    model_class = "?"
    truncation = "longest_first"

    def __init__(self, opts: TaskOptions, model, tokenizer):
        self.opts = opts
        self.model = model
        self.tokenizer = tokenizer
        self.config = model.config

    @classmethod
    def fields(cls, opts: TaskOptions) -> list[str]:
        """The input fields the task reads, in tokenizer order."""
        return [opts.text_field] + ([opts.pair_field] if opts.pair_field else [])

    def columns(self) -> list[str]:
        return self.fields(self.opts)

    def tokenizer_input(self, fields: dict) -> tuple[str | tuple[str, str] | None, str | None]:
        """(input for the tokenizer, None) or (None, reason the row is bad)."""
        texts = []
        for name in self.columns():
            value = fields[name]
            if not isinstance(value, str):
                return None, f"field {name!r} is not a string ({type(value).__name__})"
            if not value.strip():
                return None, f"field {name!r} is empty"
            texts.append(value)
        return (texts[0] if len(texts) == 1 else tuple(texts)), None

    def check(self, encoding) -> str | None:
        return None

    def schema(self) -> list:
        raise NotImplementedError

    def run(self, inputs: dict[str, torch.Tensor], encodings: list, texts: list) -> list[dict]:
        raise NotImplementedError


def _softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.softmax(x.float(), dim=dim)


class Classify(Task):
    name, model_class = "classify", "SqueezeBertForSequenceClassification"

    def schema(self):
        import pyarrow as pa

        fields = [("label", pa.string()), ("score", pa.float64())]
        if self.opts.all_scores:
            fields.append(("scores", pa.list_(pa.float64())))
        return fields

    def run(self, inputs, encodings, texts):
        logits = self.model(**inputs).logits.float()
        if self.config.num_labels == 1 or self.config.problem_type == "regression":
            probs = logits
        elif self.config.problem_type == "multi_label_classification":
            probs = torch.sigmoid(logits)
        else:
            probs = _softmax(logits)
        best = probs.argmax(dim=-1).tolist()
        probs = probs.tolist()
        out = []
        for p, b in zip(probs, best):
            row = {"label": self.config.id2label[b], "score": p[b]}
            if self.opts.all_scores:
                row["scores"] = p
            out.append(row)
        return out


class Embed(Task):
    name, model_class = "embed", "SqueezeBertModel"

    def schema(self):
        import pyarrow as pa

        return [("embedding", pa.list_(pa.float32()))]

    def run(self, inputs, encodings, texts):
        out = self.model(**inputs)
        emb = self.pool(out, inputs["attention_mask"])
        return [{"embedding": row} for row in emb.numpy()]

    def pool(self, out, mask: torch.Tensor) -> torch.Tensor:
        pooling = self.opts.pooling
        if pooling == "mean":
            m = mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            emb = (out.last_hidden_state * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)
        elif pooling == "cls":
            emb = out.last_hidden_state[:, 0]
        elif pooling == "pooler":
            emb = out.pooler_output
        else:  # TaskOptions refuses other values
            raise AssertionError(pooling)
        emb = emb.float()
        if self.opts.normalize:
            emb = torch.nn.functional.normalize(emb, p=2, dim=-1)
        return emb.contiguous()


class TokenClassify(Task):
    name, model_class = "token-classify", "SqueezeBertForTokenClassification"

    def schema(self):
        import pyarrow as pa

        tag = pa.struct([("token", pa.string()), ("label", pa.string()), ("score", pa.float64()),
                         ("start", pa.int64()), ("end", pa.int64())])
        return [("tokens", pa.list_(tag))]

    def run(self, inputs, encodings, texts):
        probs = _softmax(self.model(**inputs).logits)
        score, best = probs.max(dim=-1)
        score, best = score.tolist(), best.tolist()
        id2label = self.config.id2label
        out = []
        for r, enc in enumerate(encodings):
            tags = []
            for t, (special, (start, end)) in enumerate(zip(enc.special_tokens_mask, enc.offsets)):
                if special:
                    continue
                tags.append({"token": enc.tokens[t], "label": id2label[best[r][t]], "score": score[r][t],
                             "start": start, "end": end})
            out.append({"tokens": tags})
        return out


class QuestionAnswering(Task):
    name, model_class = "qa", "SqueezeBertForQuestionAnswering"
    truncation = "only_second"  # the context is cut, never the question

    @classmethod
    def fields(cls, opts):
        return [opts.question_field, opts.context_field]

    def check(self, encoding):
        if 1 not in encoding.sequence_ids:
            return "no context token fits after the question within max_length"
        return None

    def schema(self):
        import pyarrow as pa

        return [("answer", pa.string()), ("start", pa.int64()), ("end", pa.int64()), ("score", pa.float64())]

    def run(self, inputs, encodings, texts):
        out = self.model(**inputs)
        start_logits, end_logits = out.start_logits.float(), out.end_logits.float()
        longest = self.opts.max_answer_tokens
        results = []
        for r, enc in enumerate(encodings):
            ctx = np.array([s == 1 for s in enc.sequence_ids] + [False] * (start_logits.shape[1] - len(enc.ids)))
            idx = torch.from_numpy(np.flatnonzero(ctx))
            # Probabilities over the context tokens only (the transformers pipeline's "score").
            p_start = _softmax(start_logits[r, idx])
            p_end = _softmax(end_logits[r, idx])
            pair = torch.triu(p_start[:, None] * p_end[None, :])
            pair = torch.tril(pair, diagonal=longest - 1)
            best = int(pair.argmax())
            s, e = divmod(best, pair.shape[1])
            ts, te = int(idx[s]), int(idx[e])
            context = texts[r][1]
            cs, ce = enc.offsets[ts][0], enc.offsets[te][1]
            results.append({"answer": context[cs:ce], "start": cs, "end": ce, "score": float(pair[s, e])})
        return results


class FillMask(Task):
    name, model_class = "fill-mask", "SqueezeBertForMaskedLM"

    def __init__(self, opts, model, tokenizer):
        super().__init__(opts, model, tokenizer)
        self.mask_id = tokenizer.mask_token_id
        if self.mask_id is None:
            raise ValueError("fill-mask needs a tokenizer with a mask token")

    def check(self, encoding):
        if self.mask_id not in encoding.ids:
            return f"no {self.tokenizer.mask_token} token in the text (or it was truncated away)"
        return None

    def schema(self):
        import pyarrow as pa

        pred = pa.struct([("token", pa.string()), ("token_id", pa.int64()), ("score", pa.float64())])
        return [("predictions", pa.list_(pa.list_(pred)))]

    def run(self, inputs, encodings, texts):
        ids = inputs["input_ids"]
        logits = self.model(**inputs).logits
        rows, cols = (ids == self.mask_id).nonzero(as_tuple=True)
        probs = _softmax(logits[rows, cols])
        k = min(self.opts.top_k, probs.shape[-1])
        top_p, top_i = probs.topk(k, dim=-1)
        top_p, top_i, rows = top_p.tolist(), top_i.tolist(), rows.tolist()
        backend = self.tokenizer.backend_tokenizer
        results = [{"predictions": []} for _ in encodings]
        for m, r in enumerate(rows):
            results[r]["predictions"].append(
                [{"token": backend.id_to_token(i), "token_id": i, "score": p} for i, p in zip(top_i[m], top_p[m])])
        return results


TASKS = {t.name: t for t in (Classify, Embed, TokenClassify, QuestionAnswering, FillMask)}


def make_task(name: str, opts: TaskOptions, model, tokenizer) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    return TASKS[name](opts, model, tokenizer)
