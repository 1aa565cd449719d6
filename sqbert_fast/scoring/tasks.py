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

__all__ = ["EMBEDDING_DTYPES", "POOLINGS", "TASKS", "TaskOptions", "check_positive_int", "make_task",
           "quantize_embeddings", "ranges_digest"]

# mean, cls, pooler, and sentence-transformers' other modes (recipe.py); "a+b" concatenates modes as it does
POOLINGS = ("mean", "cls", "pooler", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")

# How embed stores its vectors: sentence-transformers' quantize_embeddings precisions (float16 is a plain cast).
EMBEDDING_DTYPES = ("float32", "float16", "int8", "ubinary")


def quantize_embeddings(emb: np.ndarray, dtype: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """[rows, dim] float32 -> the stored vectors, as sentence-transformers' ``quantize_embeddings(emb,
    precision, ranges=ranges)``: float16 a cast; ubinary ``x > 0`` bits packed along the dimension (uint8,
    dim/8 bytes a row, first dimension in the high bit); int8 each dimension's [min, max] (``ranges``, shape
    [2, dim]) cut into 256 equal buckets, bucket index - 128, values outside the range clipped to its ends."""
    emb = np.asarray(emb, dtype=np.float32)
    if dtype == "float32":
        return emb
    if dtype == "float16":
        return emb.astype(np.float16)
    if dtype == "ubinary":
        return np.packbits(emb > 0, axis=-1)
    if dtype == "int8":
        if ranges is None:
            raise ValueError("int8 embeddings need ranges: calibrate (Scorer.calibrate) or pass embedding_ranges")
        low = ranges[0].astype(np.float32)
        step = (ranges[1].astype(np.float32) - low) / 255
        step = np.where(step == 0, 1, step).astype(np.float32)  # a constant dimension: every value in bucket 0
        bucket = np.clip(np.floor((emb - low) / step), 0, 255)
        return (bucket - 128).astype(np.int8)
    raise ValueError(f"embedding_dtype (--embedding-dtype) must be one of {', '.join(EMBEDDING_DTYPES)}, got {dtype!r}")


def check_ranges(ranges, dim: int) -> np.ndarray:
    """int8 ranges as a float32 [2, dim] array (row 0 the minima, row 1 the maxima), or a ValueError."""
    if isinstance(ranges, (str, bytes)) or hasattr(ranges, "__fspath__"):
        try:
            ranges = np.load(ranges, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read int8 ranges (--int8-ranges) from {ranges}: {err}") from None
    arr = np.asarray(ranges, dtype=np.float32)
    if arr.shape != (2, dim):
        raise ValueError(f"int8 ranges (--int8-ranges) must have shape (2, {dim}) (minima, maxima per dimension), "
                         f"got {arr.shape}")
    if not np.isfinite(arr).all() or (arr[0] > arr[1]).any():
        raise ValueError("int8 ranges (--int8-ranges) must be finite, with each minimum <= its maximum")
    return arr


def ranges_digest(ranges: np.ndarray | None) -> str | None:
    import hashlib

    return None if ranges is None else hashlib.sha256(np.ascontiguousarray(ranges, np.float32).tobytes()).hexdigest()


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
    pooling: str | None = None        # embed: one of POOLINGS, or "a+b" (concatenated); None: the model's recipe
    normalize: bool | None = None     # embed: L2-normalise; None: the model's recipe
    max_answer_tokens: int = 30       # qa: longest answer span
    lowercase: bool = False           # embed: lower-case texts first (a recipe's do_lower_case)
    embedding_dtype: str = "float32"  # embed: how vectors are stored, one of EMBEDDING_DTYPES
    int8_calibration_rows: int = 2048  # embed, int8: rows whose embeddings give the ranges (none passed)
    doc_stride: int | None = None     # qa: tokens shared by consecutive context windows; None: min(max_length // 2, 128)

    def __post_init__(self):
        self.top_k = check_positive_int("top_k", self.top_k)
        self.max_answer_tokens = check_positive_int("max_answer_tokens", self.max_answer_tokens)
        self.int8_calibration_rows = check_positive_int("int8_calibration_rows", self.int8_calibration_rows)
        if self.embedding_dtype not in EMBEDDING_DTYPES:
            raise ValueError(f"embedding_dtype (--embedding-dtype) must be one of {', '.join(EMBEDDING_DTYPES)}, "
                             f"got {self.embedding_dtype!r}")
        if self.doc_stride is not None:
            if isinstance(self.doc_stride, bool) or not isinstance(self.doc_stride, int) or self.doc_stride < 0:
                raise ValueError(f"doc_stride (--doc-stride) must be a whole number >= 0, got {self.doc_stride!r}")
        if self.pooling is not None and (not isinstance(self.pooling, str)
                                         or not all(m in POOLINGS for m in self.pooling.split("+"))):
            raise ValueError(f"pooling (--pooling) must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")


class Task:
    name = "?"
    model_class = "?"
    truncation = "longest_first"

    def __init__(self, opts: TaskOptions, model, tokenizer, config=None):
        self.opts = opts
        self.model = model  # None: a task that only describes its output (schema), as Ray's driver needs
        self.tokenizer = tokenizer
        self.config = model.config if model is not None else config

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

    def pieces(self, encoding) -> list:
        """The encodings a row is run as: itself (QA: one per context window)."""
        return [encoding]

    def merge(self, outputs: list[dict]) -> dict:
        """One row's result from its pieces' results, in piece order."""
        return outputs[0]

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

    def tokenizer_input(self, fields):
        inp, err = super().tokenizer_input(fields)
        if inp is not None and self.opts.lowercase:
            inp = inp.lower() if isinstance(inp, str) else tuple(t.lower() for t in inp)
        return inp, err

    ranges: np.ndarray | None = None  # int8: [2, dim] minima and maxima, set by the Scorer for a run
    calibrating = False                # True: return the float32 vectors (the Scorer collecting int8 ranges)

    def dim(self) -> int:
        return self.config.hidden_size * len((self.opts.pooling or "mean").split("+"))

    def vector_dtype(self) -> np.dtype:
        return np.dtype({"float32": np.float32, "float16": np.float16, "int8": np.int8,
                         "ubinary": np.uint8}[self.opts.embedding_dtype])

    def width(self) -> int:
        """Values a stored vector holds: dim, or dim / 8 bytes (rounded up) for ubinary."""
        return -(-self.dim() // 8) if self.opts.embedding_dtype == "ubinary" else self.dim()

    def schema(self):
        import pyarrow as pa

        # Fixed width: Arrow stores the vectors as one flat buffer of the stored dtype, no per-row offsets.
        value = {"float32": pa.float32(), "float16": pa.float16(), "int8": pa.int8(),
                 "ubinary": pa.uint8()}[self.opts.embedding_dtype]
        return [("embedding", pa.list_(value, self.width()))]

    def run(self, inputs, encodings, texts):
        # Pooled straight from the engine's packed rows: the padded [batch, seq, hidden] copy that forward()
        # returns (zero-filled, then scattered into) cost ~2% of an int8 embedding run (perf, Sapphire Rapids).
        want_pooled = "pooler" in (self.opts.pooling or "mean").split("+")
        packed, enc, _, _ = self.model._encode(inputs["input_ids"], inputs["attention_mask"],
                                               inputs.get("token_type_ids"), None, None, False, False, want_pooled)
        emb = self.pool(enc.last_hidden, torch.tensor(packed.seqlens, device=enc.last_hidden.device), enc.pooled)
        emb = emb.cpu().numpy()
        if not self.calibrating:
            emb = quantize_embeddings(emb, self.opts.embedding_dtype, self.ranges)
        return [{"embedding": row} for row in emb]

    @staticmethod
    def _pool_one(mode: str, h: torch.Tensor, lengths: torch.Tensor, starts: torch.Tensor, seq: torch.Tensor,
                  pooled) -> torch.Tensor:
        """sentence-transformers' Pooling, one mode, on packed rows (see ``pool``): ``starts`` [batch] is where
        each sequence begins, ``seq`` [tokens] the sequence of each row."""
        B, H = lengths.shape[0], h.shape[1]
        if mode == "cls":
            return h[starts]
        if mode == "lasttoken":
            return h[starts + (lengths - 1).clamp(min=0)]
        if mode == "pooler":
            return pooled
        if mode == "max":
            return h.new_full((B, H), float("-inf")).scatter_reduce_(0, seq[:, None].expand(-1, H), h, "amax")
        count = lengths.to(h.dtype)[:, None]
        if mode == "weightedmean":  # weights 1..L along each sequence, as sentence-transformers' (arange * mask)
            w = (torch.arange(h.shape[0], device=h.device) - starts[seq] + 1).to(h.dtype)[:, None]
            total = h.new_zeros(B, H).index_add_(0, seq, h * w)
            return total / (count * (count + 1) / 2).clamp(min=1e-9)
        total = h.new_zeros(B, H).index_add_(0, seq, h)
        if mode == "mean":
            return total / count.clamp(min=1e-9)
        if mode == "mean_sqrt_len_tokens":
            return total / count.clamp(min=1e-9).sqrt()
        raise AssertionError(mode)  # TaskOptions refuses other values

    def pool(self, hidden: torch.Tensor, lengths: torch.Tensor, pooled=None) -> torch.Tensor:
        """[batch, dim] embeddings from packed rows ``hidden`` [tokens, hidden]: the sequences back to back
        (right-padded inputs: each in column order), of ``lengths`` [batch] (and the pooler output, for mode
        pooler)."""
        modes = (self.opts.pooling or "mean").split("+")
        starts = torch.cumsum(lengths, 0) - lengths
        seq = torch.repeat_interleave(torch.arange(lengths.shape[0], device=hidden.device), lengths)
        emb = torch.cat([self._pool_one(mode, hidden, lengths, starts, seq, pooled).float() for mode in modes], dim=-1)
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
    """Extractive QA over contexts of any length, as transformers' question-answering pipeline does: the
    context is cut into windows of at most max_length tokens (question included) that share ``doc_stride``
    tokens with their neighbours; each window's start and end logits are turned into probabilities over its
    context tokens and [CLS] (the pipeline keeps [CLS] in the softmax, then gives it probability 0), its best
    span (start <= end, at most max_answer_tokens) scores p_start * p_end, and the row's answer is the best
    span over all windows (the first window on a tie), as character offsets into the original context.
    Unlike the pipeline, spans are not widened to whole words, and a span found in two windows keeps its
    better score (the pipeline adds the scores of equal answer texts)."""

    name, model_class = "qa", "SqueezeBertForQuestionAnswering"
    truncation = "only_second"  # the context is cut, never the question

    @classmethod
    def fields(cls, opts):
        return [opts.question_field, opts.context_field]

    def check(self, encoding):
        if 1 not in encoding.sequence_ids:
            return "no context token fits after the question within max_length"
        return None

    def pieces(self, encoding):
        return [encoding] + list(encoding.overflowing)

    def merge(self, outputs):
        return max(outputs, key=lambda r: r["score"])  # max() keeps the first of equal scores

    def schema(self):
        import pyarrow as pa

        return [("answer", pa.string()), ("start", pa.int64()), ("end", pa.int64()), ("score", pa.float64())]

    def run(self, inputs, encodings, texts):
        out = self.model(**inputs)
        start_logits, end_logits = out.start_logits.float(), out.end_logits.float()
        longest = self.opts.max_answer_tokens
        cls_id = self.tokenizer.cls_token_id
        results = []
        for r, enc in enumerate(encodings):
            ctx = np.array([s == 1 for s in enc.sequence_ids])
            allowed = ctx | (np.array(enc.ids) == cls_id) if cls_id is not None else ctx
            idx = torch.from_numpy(np.flatnonzero(allowed))
            in_ctx = torch.from_numpy(ctx[idx.numpy()])
            # Softmax over context + [CLS] (the pipeline's normalisation), then [CLS] can never be chosen.
            p_start = _softmax(start_logits[r, idx]) * in_ctx
            p_end = _softmax(end_logits[r, idx]) * in_ctx
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

    def __init__(self, opts, model, tokenizer, config=None):
        super().__init__(opts, model, tokenizer, config)
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


def make_task(name: str, opts: TaskOptions, model, tokenizer, config=None) -> Task:
    """``model=None`` with ``config``: a task that only describes its output (``schema``), not one that runs."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    return TASKS[name](opts, model, tokenizer, config)
