"""SqueezeBERT's tokenizer: BERT's uncased WordPiece, built on the Rust `tokenizers` library.

The pipeline is the one transformers' ``BertTokenizer`` (transformers 5) assembles, from the same parts:
``normalizers.BertNormalizer`` -> ``pre_tokenizers.BertPreTokenizer`` -> ``models.WordPiece`` ->
``processors.TemplateProcessing`` (``[CLS] A [SEP]`` / ``[CLS] A [SEP] B [SEP]``), decoded by
``decoders.WordPiece``. Padding and truncation are delegated to the Rust tokenizer too. The Python layer
only resolves options, validates input and shapes the output like transformers' ``BatchEncoding``, so ids,
masks and offsets match transformers exactly. transformers itself is not imported.

Where transformers is silent on bad input this module raises instead (documented on each method): a
truncation ``max_length`` too small for the special tokens, ``padding="max_length"`` with no length to pad
to, and token ids outside the vocabulary in ``decode``/``convert_ids_to_tokens``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

__all__ = ["BatchEncoding", "SqueezeBertTokenizer", "SqueezeBertTokenizerFast", "load_vocab"]

VOCAB_FILE = "vocab.txt"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"

# transformers treats a model_max_length above this as "no limit" (its LARGE_INTEGER).
_NO_LIMIT = int(1e20)
_PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
_TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")
_SPECIAL_TOKEN_NAMES = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# tokenizer_config.json keys that map onto constructor arguments; other keys (tokenizer_class, backend,
# name_or_path, ...) describe the file, not the tokenizer, and are ignored.
_CONFIG_KEYS = (
    "do_lower_case",
    "strip_accents",
    "tokenize_chinese_chars",
    "never_split",
    "model_max_length",
    "padding_side",
    "truncation_side",
    "clean_up_tokenization_spaces",
) + _SPECIAL_TOKEN_NAMES
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def load_vocab(vocab_file: str | os.PathLike) -> dict[str, int]:
    """Read a BERT ``vocab.txt`` (one token per line, id = line number) like transformers does."""
    vocab: dict[str, int] = {}
    with open(vocab_file, encoding="utf-8") as reader:
        for index, line in enumerate(reader):
            vocab[line.rstrip("\n")] = index
    return vocab


def _token_str(value: Any) -> str | None:
    """A special token as stored in configs (str, AddedToken or its JSON dict) -> its text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, AddedToken):
        return value.content
    if isinstance(value, Mapping) and "content" in value:
        return value["content"]
    raise TypeError(f"a special token must be a str, got {type(value).__name__}: {value!r}")


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strategy_value(value: Any) -> Any:
    """Accept transformers' str enums (PaddingStrategy.LONGEST, ...) as their string values."""
    return getattr(value, "value", value)


def _as_int_list(ids: Any, what: str) -> list:
    """Torch tensors, numpy arrays, ints and nested lists of them -> plain Python ints."""
    if hasattr(ids, "tolist"):  # torch.Tensor, np.ndarray, np.integer
        ids = ids.tolist()
    if isinstance(ids, bool):
        raise TypeError(f"{what} must be ints, got a bool")
    if isinstance(ids, int):
        return ids
    if isinstance(ids, (list, tuple)):
        return [_as_int_list(i, what) for i in ids]
    raise TypeError(f"{what} must be an int or a sequence of ints, got {type(ids).__name__}")


class BatchEncoding(dict):
    """The output of a tokenizer call: a dict (so ``model(**enc)`` works) with attribute access.

    Mirrors transformers' ``BatchEncoding``: ``enc.input_ids``, ``enc.to(device)``, ``enc.word_ids(i)``,
    ``enc.tokens(i)``, ``enc.sequence_ids(i)``, ``enc.encodings``; an int index gives the
    ``tokenizers.Encoding`` of that batch element.
    """

    def __init__(self, data: Mapping[str, Any] | None = None, encodings: list | None = None):
        super().__init__(data or {})
        self._encodings = encodings

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no field {name!r} (fields: {list(self)})") from None

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)) and not isinstance(key, bool):
            if self._encodings is None:
                raise KeyError(key)
            return self._encodings[key]
        return super().__getitem__(key)

    @property
    def encodings(self) -> list | None:
        """The ``tokenizers.Encoding`` of each batch element."""
        return self._encodings

    def _encoding(self, batch_index: int):
        if not self._encodings:
            raise ValueError("this BatchEncoding carries no encodings")
        return self._encodings[batch_index]

    def tokens(self, batch_index: int = 0) -> list[str]:
        """The token strings of one batch element (padding included)."""
        return self._encoding(batch_index).tokens

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token, the index of the word it came from; None for special and pad tokens."""
        return self._encoding(batch_index).word_ids

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token, 0 (first text) or 1 (pair text); None for special and pad tokens."""
        return self._encoding(batch_index).sequence_ids

    def to(self, device: Any, *, non_blocking: bool = False) -> BatchEncoding:
        """Move every torch tensor to ``device`` (in place) and return self."""
        for key, value in self.items():
            if hasattr(value, "to") and callable(value.to):
                self[key] = value.to(device=device, non_blocking=non_blocking)
        return self

    def _convert_to_tensors(self, return_tensors: str) -> None:
        if return_tensors == "pt":
            import torch

            def as_tensor(value):
                return torch.tensor(value, dtype=torch.long)

        else:
            import numpy as np

            def as_tensor(value):
                return np.asarray(value, dtype=np.int64)

        for key, value in self.items():
            if len({len(row) for row in value}) > 1:
                raise ValueError(
                    f"cannot make a {return_tensors!r} tensor of {key!r}: the sequences have different lengths "
                    f"{[len(row) for row in value]}; pass padding=True (and truncation=True if needed)"
                )
            self[key] = as_tensor(value)


def _special_id_property(name: str) -> property:
    """``<name>_id``: the id of the special token ``name`` (None when it is unset or not in the vocabulary)."""
    return property(lambda self: self._special_id(getattr(self, name)), doc=f"The id of ``{name}``.")


class SqueezeBertTokenizerFast:
    """SqueezeBERT tokenizer (BERT uncased WordPiece) with the API and outputs of transformers' BertTokenizer.

    Args:
        vocab_file: a BERT ``vocab.txt``; used when ``tokenizer_file`` is not given.
        tokenizer_file: a ``tokenizers`` ``tokenizer.json`` holding a WordPiece model; its vocabulary and added
            tokens are kept, while normalizer, pre-tokenizer, post-processor and decoder are rebuilt from the
            arguments below (as transformers does), so ``do_lower_case`` etc. always take effect.
        vocab: a ``{token: id}`` dict, instead of either file.
        do_lower_case: lowercase the text before WordPiece.
        tokenize_chinese_chars: put spaces around CJK ideographs, so each becomes its own word.
        strip_accents: strip accents; None follows ``do_lower_case`` (original BERT behaviour).
        never_split: tokens kept whole: they are registered as added (non-special) tokens matched on the raw,
            un-normalized text as whole words. One missing from the vocabulary gets a new id past the end of
            the vocabulary (with a warning: the model's embeddings must cover it).
        model_max_length: longest sequence the model takes; the default for ``truncation=True`` and
            ``padding="max_length"`` without ``max_length``, and the length past which a warning is emitted.
        padding_side, truncation_side: ``"right"`` or ``"left"``.
        clean_up_tokenization_spaces: default of the ``decode`` argument of the same name.
    """

    vocab_files_names = {"vocab_file": VOCAB_FILE, "tokenizer_file": TOKENIZER_FILE}
    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    pad_token_type_id = 0
    is_fast = True

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        tokenizer_file: str | os.PathLike | None = None,
        do_lower_case: bool = True,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
        tokenize_chinese_chars: bool = True,
        strip_accents: bool | None = None,
        never_split: Iterable[str] | None = None,
        model_max_length: int = 512,
        padding_side: str = "right",
        truncation_side: str = "right",
        clean_up_tokenization_spaces: bool = False,
        vocab: Mapping[str, int] | None = None,
        name_or_path: str = "",
    ):
        self.unk_token = _token_str(unk_token)
        self.sep_token = _token_str(sep_token)
        self.pad_token = _token_str(pad_token)
        self.cls_token = _token_str(cls_token)
        self.mask_token = _token_str(mask_token)
        for name in ("unk_token", "sep_token", "cls_token"):
            if not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string; BERT's input template needs it")
        self.do_lower_case = bool(do_lower_case)
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.strip_accents = strip_accents
        if isinstance(never_split, str):
            raise TypeError("never_split must be a list of tokens, not a single string")
        self.never_split = list(never_split) if never_split else []
        if not (_is_int(model_max_length) and model_max_length > 0):
            raise ValueError(f"model_max_length must be a positive int, got {model_max_length!r}")
        self.model_max_length = model_max_length
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.name_or_path = str(name_or_path)
        self._lock = threading.Lock()  # padding/truncation are set on the shared backend for each call

        if tokenizer_file is not None:
            backend = self._load_tokenizer_file(os.fspath(tokenizer_file))
        else:
            if vocab is None:
                if vocab_file is None:
                    raise ValueError("SqueezeBertTokenizerFast needs a vocab_file, a tokenizer_file or a vocab dict")
                vocab_file = os.fspath(vocab_file)
                if not os.path.isfile(vocab_file):
                    raise FileNotFoundError(f"vocabulary file not found: {vocab_file}")
                vocab = load_vocab(vocab_file)
            vocab = dict(vocab)
            if not vocab:
                raise ValueError(f"the vocabulary is empty{f' ({vocab_file})' if vocab_file else ''}")
            # WordPiece looks [UNK] up in its own vocabulary, not among added tokens.
            vocab.setdefault(self.unk_token, len(vocab))
            backend = Tokenizer(WordPiece(vocab, unk_token=self.unk_token, max_input_chars_per_word=100))

        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=self.tokenize_chinese_chars,
            strip_accents=strip_accents,
            lowercase=self.do_lower_case,
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
        # Special tokens match the raw text exactly ("[MASK]" but not "[mask]"), as in transformers.
        backend.add_special_tokens(
            [AddedToken(token, normalized=False, special=True) for token in self._named_special_tokens()]
        )
        self._tokenizer = backend
        self._add_never_split(self.never_split)
        cls_id, sep_id = self.cls_token_id, self.sep_token_id
        backend.post_processor = processors.TemplateProcessing(
            single=f"{self.cls_token}:0 $A:0 {self.sep_token}:0",
            pair=f"{self.cls_token}:0 $A:0 {self.sep_token}:0 $B:1 {self.sep_token}:1",
            special_tokens=[(self.cls_token, cls_id), (self.sep_token, sep_id)],
        )

    @staticmethod
    def _load_tokenizer_file(path: str) -> Tokenizer:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        model_type = _read_json(path).get("model", {}).get("type")
        if model_type != "WordPiece":
            raise ValueError(f"{path} does not hold a WordPiece tokenizer (model type {model_type!r})")
        try:
            backend = Tokenizer.from_file(path)
        except Exception as err:  # the Rust deserializer's errors are plain Exceptions
            raise ValueError(f"{path} is not a valid tokenizer.json: {err}") from err
        # tokenizer.json files often carry a fixed padding/truncation (e.g. 128); per-call options rule here.
        backend.no_padding()
        backend.no_truncation()
        return backend

    def _add_never_split(self, tokens: list[str]) -> None:
        named = set(self._named_special_tokens())
        fresh = [t for t in tokens if t not in named]
        for token in fresh:
            if not isinstance(token, str) or not token:
                raise TypeError(f"never_split entries must be non-empty strings, got {token!r}")
        missing = [t for t in fresh if self._tokenizer.token_to_id(t) is None]
        if missing:
            warnings.warn(
                f"never_split tokens {missing} are not in the vocabulary; they get new ids from "
                f"{len(self)} on, which the model's embedding table must cover",
                stacklevel=3,
            )
        self._tokenizer.add_tokens(
            [AddedToken(t, single_word=True, normalized=False, special=False) for t in fresh]
        )

    # ------------------------------------------------------------------ loading and saving

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        cache_dir: str | os.PathLike | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        **kwargs: Any,
    ) -> SqueezeBertTokenizerFast:
        """Load from a directory (``tokenizer.json`` if present, else ``vocab.txt``), a ``vocab.txt`` or
        ``tokenizer.json`` path, or a Hugging Face Hub id (through ``huggingface_hub``, when installed).

        ``tokenizer_config.json`` and ``special_tokens_map.json`` are read when present; ``kwargs`` override
        them and are passed to the constructor.
        """
        path = os.fspath(pretrained_model_name_or_path)
        if os.path.isfile(path):
            directory = os.path.dirname(path)
            files = {"tokenizer_file" if path.endswith(".json") else "vocab_file": path}
        else:
            if os.path.isdir(path):
                directory = path
            elif _HUB_ID.fullmatch(path):
                directory = _snapshot_download(
                    path, cache_dir=cache_dir, revision=revision, token=token, local_files_only=local_files_only
                )
            else:
                raise FileNotFoundError(f"no tokenizer at {path!r}: it is neither a file nor a directory")
            files = {}
            for key, name in cls.vocab_files_names.items():
                if os.path.isfile(os.path.join(directory, name)):
                    files[key] = os.path.join(directory, name)
            if not files:
                raise FileNotFoundError(f"{directory} holds neither {TOKENIZER_FILE} nor {VOCAB_FILE}")
            if "tokenizer_file" in files:
                files.pop("vocab_file", None)

        init: dict[str, Any] = {}
        if "tokenizer_file" in files:
            # Defaults come from the file's own normalizer; tokenizer_config.json and kwargs override them.
            norm = _read_json(files["tokenizer_file"]).get("normalizer") or {}
            if norm.get("type") == "BertNormalizer":
                init.update(
                    do_lower_case=norm.get("lowercase", True),
                    strip_accents=norm.get("strip_accents"),
                    tokenize_chinese_chars=norm.get("handle_chinese_chars", True),
                )
        for name in (TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE):
            config_path = os.path.join(directory, name)
            if directory and os.path.isfile(config_path):
                config = _read_json(config_path)
                init.update({k: v for k, v in config.items() if k in _CONFIG_KEYS})
        if init.get("model_max_length") is None:
            init.pop("model_max_length", None)
        init.update(files)
        init.update(kwargs)
        init.setdefault("name_or_path", path)
        return cls(**init)

    def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """Write vocab.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json.

        transformers' ``BertTokenizer.from_pretrained`` (and ``AutoTokenizer``) loads the result.
        """
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise NotADirectoryError(f"save_pretrained needs a directory, {save_directory} is a file")
        os.makedirs(save_directory, exist_ok=True)
        paths = {name: os.path.join(save_directory, name) for name in
                 (TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, VOCAB_FILE, TOKENIZER_FILE)}

        special_tokens = {name: getattr(self, name) for name in _SPECIAL_TOKEN_NAMES if getattr(self, name)}
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.do_lower_case,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "never_split": self.never_split or None,
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            **special_tokens,
        }
        for name, data in ((TOKENIZER_CONFIG_FILE, config), (SPECIAL_TOKENS_MAP_FILE, special_tokens)):
            with open(paths[name], "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, ensure_ascii=False)
                f.write("\n")
        # vocab.txt holds the WordPiece vocabulary by line number; added tokens live in tokenizer.json.
        by_id = sorted(self._tokenizer.get_vocab(with_added_tokens=False).items(), key=lambda kv: kv[1])
        if [i for _, i in by_id] == list(range(len(by_id))):
            with open(paths[VOCAB_FILE], "w", encoding="utf-8") as f:
                f.writelines(token + "\n" for token, _ in by_id)
        else:  # e.g. a vocab.txt with duplicate lines was loaded; line numbers cannot express these ids
            del paths[VOCAB_FILE]
            warnings.warn("the vocabulary ids have gaps, so no vocab.txt was written; tokenizer.json holds them",
                          stacklevel=2)
        with self._lock:
            self._tokenizer.save(paths[TOKENIZER_FILE])
        return tuple(paths.values())

    # ------------------------------------------------------------------ vocabulary and special tokens

    def _named_special_tokens(self) -> list[str]:
        # Order of transformers' SPECIAL_TOKENS_ATTRIBUTES (unk, sep, pad, cls, mask), duplicates removed.
        tokens = [getattr(self, name) for name in _SPECIAL_TOKEN_NAMES]
        return list(dict.fromkeys(t for t in tokens if t))

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        """Size of the WordPiece vocabulary, without added tokens (as in transformers)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        """Size of the vocabulary including added tokens."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        """``{token: id}`` including added tokens."""
        return self._tokenizer.get_vocab(with_added_tokens=True)

    @property
    def vocab(self) -> dict[str, int]:
        return self.get_vocab()

    def _special_id(self, token: str | None) -> int | None:
        return None if token is None else self._tokenizer.token_to_id(token)

    unk_token_id = _special_id_property("unk_token")
    sep_token_id = _special_id_property("sep_token")
    pad_token_id = _special_id_property("pad_token")
    cls_token_id = _special_id_property("cls_token")
    mask_token_id = _special_id_property("mask_token")

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in _SPECIAL_TOKEN_NAMES if getattr(self, name)}

    @property
    def all_special_tokens(self) -> list[str]:
        return self._named_special_tokens()

    @property
    def all_special_ids(self) -> list[int]:
        return [self._tokenizer.token_to_id(t) for t in self._named_special_tokens()]

    def add_tokens(self, new_tokens: str | Iterable[str], special_tokens: bool = False) -> int:
        """Add tokens kept whole (matched on the raw text); returns how many got new ids."""
        if isinstance(new_tokens, str):
            new_tokens = [new_tokens]
        tokens = [AddedToken(self._check_str(t, "token"), normalized=False, special=special_tokens)
                  for t in new_tokens]
        before = len(self)
        if special_tokens:
            self._tokenizer.add_special_tokens(tokens)
        else:
            self._tokenizer.add_tokens(tokens)
        return len(self) - before

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2

    def convert_tokens_to_ids(self, tokens: str | Iterable[str] | None) -> int | list[int] | None:
        """Token(s) -> id(s); a token outside the vocabulary maps to ``unk_token_id``."""
        if tokens is None:
            return None
        if isinstance(tokens, str):
            index = self._tokenizer.token_to_id(tokens)
            return self.unk_token_id if index is None else index
        return [self.convert_tokens_to_ids(self._check_str(t, "token")) for t in tokens]

    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> str | list[str]:
        """Id(s) -> token(s). An id outside the vocabulary raises ValueError (transformers gives None)."""
        ids = _as_int_list(ids, "token ids")
        if isinstance(ids, int):
            return self._id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._id_to_token(i) for i in ids if i not in skip]

    def _id_to_token(self, index: int) -> str:
        if not isinstance(index, int):
            raise TypeError(f"token ids must be ints, got {type(index).__name__}")
        token = self._tokenizer.id_to_token(index) if index >= 0 else None
        if token is None:
            raise ValueError(f"token id {index} is outside the vocabulary (size {len(self)})")
        return token

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self._tokenizer.decoder.decode(list(tokens))

    @staticmethod
    def _check_str(value: Any, what: str) -> str:
        if not isinstance(value, str):
            raise TypeError(f"{what} must be a str, got {type(value).__name__}: {value!r:.80}")
        return value

    # ------------------------------------------------------------------ sequence building (BERT layout)

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]``."""
        cls, sep = [self.cls_token_id], [self.sep_token_id]
        if token_ids_1 is None:
            return cls + list(token_ids_0) + sep
        return cls + list(token_ids_0) + sep + list(token_ids_1) + sep

    def get_special_tokens_mask(
        self,
        token_ids_0: list[int],
        token_ids_1: list[int] | None = None,
        already_has_special_tokens: bool = False,
    ) -> list[int]:
        """1 where ``build_inputs_with_special_tokens`` puts a special token, 0 elsewhere; with
        ``already_has_special_tokens`` the mask of special ids in ``token_ids_0`` itself."""
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("token_ids_1 must be None when the ids already have special tokens")
            special = set(self.all_special_ids)
            return [1 if int(i) in special else 0 for i in token_ids_0]
        if token_ids_1 is None:
            return [1] + [0] * len(token_ids_0) + [1]
        return [1] + [0] * len(token_ids_0) + [1] + [0] * len(token_ids_1) + [1]

    def create_token_type_ids_from_sequences(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """0 over ``[CLS] A [SEP]``, 1 over ``B [SEP]``."""
        first = [0] * (len(token_ids_0) + 2)
        return first if token_ids_1 is None else first + [1] * (len(token_ids_1) + 1)

    # ------------------------------------------------------------------ encoding

    def __call__(
        self,
        text: str | Sequence[str] | Sequence[Sequence[str]],
        text_pair: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Tokenize one text, a batch of texts, or (batches of) text pairs, as transformers does.

        ``padding``: False/"do_not_pad", True/"longest", "max_length". ``truncation``: False/"do_not_truncate",
        True/"longest_first", "only_first", "only_second"; None means off unless ``max_length`` is given alone.
        A missing ``max_length`` defaults to ``model_max_length`` for truncation and max-length padding.
        ``return_tensors``: None (lists), "pt" or "np"; tensors always have a batch axis.
        Sequences longer than ``model_max_length`` with no ``max_length`` give a warning, not an error.
        """
        padding, truncation, max_length = self._resolve_strategies(
            padding, truncation, max_length, pad_to_multiple_of, verbose
        )
        side = self.padding_side if padding_side is None else padding_side
        for name, value in (("padding_side", side), ("truncation_side", self.truncation_side)):
            if value not in ("left", "right"):
                raise ValueError(f"{name} must be 'left' or 'right', got {value!r}")
        if return_tensors not in (None, "pt", "np"):
            raise ValueError(f"return_tensors must be None, 'pt' or 'np', got {return_tensors!r}")

        inputs, is_batched = self._batch_inputs(text, text_pair, is_split_into_words)
        has_pair = bool(inputs) and isinstance(inputs[0], tuple)
        if truncation != "do_not_truncate":
            n_special = self.num_special_tokens_to_add(has_pair) if add_special_tokens else 0
            if max_length < n_special:
                # The Rust tokenizer silently skips truncation here; refuse instead.
                raise ValueError(
                    f"max_length={max_length} cannot hold the {n_special} special tokens added to each sequence"
                )
            if truncation == "only_second" and inputs and not has_pair:
                raise ValueError("truncation='only_second' needs text pairs (text_pair is missing)")

        encodings = self._encode_batch(
            inputs, add_special_tokens, is_split_into_words, padding, truncation, max_length,
            pad_to_multiple_of, side,
        )

        data: dict[str, list] = {"input_ids": [e.ids for e in encodings]}
        if return_token_type_ids is None or return_token_type_ids:
            data["token_type_ids"] = [e.type_ids for e in encodings]
        if return_attention_mask is None or return_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in encodings]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in encodings]
        if return_length:
            data["length"] = [len(e.ids) for e in encodings]

        if max_length is None and verbose:
            longest = max((len(e.ids) for e in encodings), default=0)
            if longest > self.model_max_length:
                warnings.warn(
                    f"token sequence length {longest} is longer than model_max_length {self.model_max_length}; "
                    "running it through the model will fail (pass truncation=True to cut it)",
                    stacklevel=2,
                )

        output = BatchEncoding(data, encodings)
        if return_tensors is not None:
            output._convert_to_tensors(return_tensors)
        elif not is_batched:
            # Drop the batch axis of per-token fields; transformers leaves `length` as a 1-item list.
            output = BatchEncoding(
                {key: value[0] if isinstance(value[0], list) else value for key, value in data.items()},
                encodings,
            )
        return output

    def _resolve_strategies(
        self, padding: Any, truncation: Any, max_length: Any, pad_to_multiple_of: Any, verbose: bool
    ) -> tuple[str, str, int | None]:
        """Normalise padding/truncation to strategy names and settle max_length (transformers' rules)."""
        padding, truncation = _strategy_value(padding), _strategy_value(truncation)
        if max_length is not None and not (_is_int(max_length) and max_length >= 0):
            raise ValueError(f"max_length must be a non-negative int, got {max_length!r}")
        if pad_to_multiple_of is not None and not (_is_int(pad_to_multiple_of) and pad_to_multiple_of > 0):
            raise ValueError(f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}")
        # transformers: a max_length given alone turns truncation on.
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"

        if padding is True:
            if verbose and max_length is not None and truncation in (None, False, "do_not_truncate"):
                warnings.warn(
                    "max_length is ignored when padding=True and truncation is off; "
                    "use padding='max_length' to pad to max_length",
                    stacklevel=3,
                )
            padding = "longest"
        elif padding is False or padding is None:
            padding = "do_not_pad"
        elif padding not in _PADDING_STRATEGIES:
            raise ValueError(f"padding must be a bool or one of {list(_PADDING_STRATEGIES)}, got {padding!r}")

        if truncation is True:
            truncation = "longest_first"
        elif truncation is False or truncation is None:
            truncation = "do_not_truncate"
        elif truncation not in _TRUNCATION_STRATEGIES:
            raise ValueError(
                f"truncation must be a bool or one of {list(_TRUNCATION_STRATEGIES)}, got {truncation!r}"
            )

        if max_length is None:
            has_limit = self.model_max_length <= _NO_LIMIT
            if padding == "max_length":
                if not has_limit:
                    raise ValueError(
                        "padding='max_length' needs max_length: this tokenizer has no model_max_length to pad to"
                    )
                max_length = self.model_max_length
            if truncation != "do_not_truncate":
                if has_limit:
                    max_length = self.model_max_length
                else:  # transformers: nothing to truncate to, so no truncation
                    truncation = "do_not_truncate"

        if (
            truncation != "do_not_truncate"
            and padding != "do_not_pad"
            and pad_to_multiple_of is not None
            and max_length % pad_to_multiple_of != 0
        ):
            raise ValueError(
                f"truncation length {max_length} is not a multiple of pad_to_multiple_of {pad_to_multiple_of}; "
                "padding could not reach a multiple without exceeding it"
            )
        return padding, truncation, max_length

    def _batch_inputs(self, text: Any, text_pair: Any, is_split_into_words: bool) -> tuple[list, bool]:
        """Validate the text arguments and return the list handed to ``encode_batch``, and is_batched."""

        def check_one(value: Any, what: str) -> Any:
            if is_split_into_words:
                if not isinstance(value, (list, tuple)):
                    raise TypeError(f"{what} must be a list of words (is_split_into_words=True), "
                                    f"got {type(value).__name__}")
                for j, word in enumerate(value):
                    self._check_str(word, f"{what}[{j}]")
                return list(value)
            return self._check_str(value, what)

        if is_split_into_words:
            if not isinstance(text, (list, tuple)):
                raise TypeError(f"text must be a list of words or a batch of them, got {type(text).__name__}")
            is_batched = bool(text) and isinstance(text[0], (list, tuple))
        else:
            if not isinstance(text, (str, list, tuple)):
                raise TypeError(f"text must be a str or a list of str, got {type(text).__name__}")
            is_batched = isinstance(text, (list, tuple))

        if not is_batched:
            text = check_one(text, "text")
            # transformers treats an empty text_pair as no pair at all; keep that for identical output.
            if text_pair is not None and not (isinstance(text_pair, (str, list, tuple)) and len(text_pair) == 0):
                return [(text, check_one(text_pair, "text_pair"))], False
            return [text], False

        texts = [check_one(t, f"text[{i}]") for i, t in enumerate(text)]
        if text_pair is None:
            return texts, True
        if isinstance(text_pair, str) or not isinstance(text_pair, (list, tuple)):
            raise TypeError(f"for a batch of texts, text_pair must be a list of the same length, "
                            f"got {type(text_pair).__name__}")
        if len(text_pair) != len(texts):
            raise ValueError(f"batch length of text ({len(texts)}) does not match batch length of "
                             f"text_pair ({len(text_pair)})")
        pairs = [check_one(t, f"text_pair[{i}]") for i, t in enumerate(text_pair)]
        return list(zip(texts, pairs)), True

    def _encode_batch(
        self, inputs: list, add_special_tokens: bool, is_pretokenized: bool, padding: str, truncation: str,
        max_length: int | None, pad_to_multiple_of: int | None, padding_side: str,
    ) -> list:
        backend = self._tokenizer
        with self._lock:
            try:
                if truncation != "do_not_truncate":
                    backend.enable_truncation(
                        max_length, stride=0, strategy=truncation, direction=self.truncation_side
                    )
                if padding != "do_not_pad":
                    backend.enable_padding(
                        direction=padding_side,
                        pad_id=self.pad_token_id,
                        pad_type_id=self.pad_token_type_id,
                        pad_token=self.pad_token,
                        length=max_length if padding == "max_length" else None,
                        pad_to_multiple_of=pad_to_multiple_of,
                    )
                return backend.encode_batch(
                    inputs, add_special_tokens=add_special_tokens, is_pretokenized=is_pretokenized
                )
            except TypeError:
                self._explain_bad_text(inputs)
                raise
            except Exception as err:
                if type(err) is Exception:  # errors raised by the Rust side, e.g. "Truncation error: ..."
                    raise ValueError(f"tokenization failed: {err}") from err
                raise
            finally:
                backend.no_truncation()
                backend.no_padding()

    @staticmethod
    def _explain_bad_text(inputs: list) -> None:
        """Turn the Rust side's opaque TypeError on unencodable text into one naming the culprit."""

        def strings(item):
            if isinstance(item, str):
                yield item
            else:
                for part in item:
                    yield from strings(part)

        for i, item in enumerate(inputs):
            for s in strings(item):
                try:
                    s.encode("utf-8")
                except UnicodeEncodeError as err:
                    raise ValueError(
                        f"input {i} is not valid Unicode text (it holds a lone surrogate at position "
                        f"{err.start}: {s[err.start]!r})"
                    ) from err

    def encode(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """The ``input_ids`` of ``self(text, text_pair, ...)``."""
        return self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            padding_side=padding_side,
            return_tensors=return_tensors,
            **kwargs,
        )["input_ids"]

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        """The WordPiece tokens of ``text`` (and ``pair``), without special tokens unless asked."""
        self._check_str(text, "text")
        inputs = [text] if not pair else [(text, self._check_str(pair, "pair"))]
        return self._encode_batch(
            inputs, add_special_tokens, False, "do_not_pad", "do_not_truncate", None, None, "right"
        )[0].tokens

    # ------------------------------------------------------------------ decoding

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str | list[str]:
        """Ids -> text (WordPiece pieces joined, ``##`` removed); a batch of id lists gives a list of texts.

        Accepts ints, lists, torch tensors and numpy arrays. An id outside the vocabulary raises ValueError
        (the Rust decoder would drop it silently).
        """
        ids = _as_int_list(token_ids, "token ids")
        if isinstance(ids, int):
            ids = [ids]
        if ids and isinstance(ids[0], list):
            return [self._decode_one(row, skip_special_tokens, clean_up_tokenization_spaces) for row in ids]
        return self._decode_one(ids, skip_special_tokens, clean_up_tokenization_spaces)

    def batch_decode(
        self,
        sequences: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        """Decode each sequence of a batch."""
        rows = _as_int_list(sequences, "token ids")
        if isinstance(rows, int):
            raise TypeError("batch_decode needs a batch of id sequences, got a single int")
        return [self.decode(row, skip_special_tokens, clean_up_tokenization_spaces) for row in rows]

    def _decode_one(self, ids: list, skip_special_tokens: bool, clean_up: bool | None) -> str:
        size = len(self)
        for index in ids:
            if not isinstance(index, int):
                raise TypeError(f"token ids must be ints, got {type(index).__name__}: {index!r}")
            if not 0 <= index < size:
                raise ValueError(f"token id {index} is outside the vocabulary (size {size})")
        text = self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        if self.clean_up_tokenization_spaces if clean_up is None else clean_up:
            text = self.clean_up_tokenization(text)
        return text

    @staticmethod
    def clean_up_tokenization(text: str) -> str:
        """Remove the spaces WordPiece decoding leaves before punctuation and English contractions."""
        for before, after in (
            (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
            (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
        ):
            text = text.replace(before, after)
        return text

    # ------------------------------------------------------------------ misc

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"do_lower_case={self.do_lower_case}, strip_accents={self.strip_accents}, "
            f"tokenize_chinese_chars={self.tokenize_chinese_chars}, model_max_length={self.model_max_length}, "
            f"padding_side={self.padding_side!r}, special_tokens={self.special_tokens_map})"
        )


def _snapshot_download(repo_id: str, **hub_kwargs: Any) -> str:
    """Fetch a Hub repo's tokenizer files into the local cache; return the snapshot directory."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:
        raise OSError(
            f"{repo_id!r} is not a local file or directory, and huggingface_hub is not installed to fetch it "
            "from the Hugging Face Hub"
        ) from err
    patterns = [VOCAB_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE]
    hub_kwargs = {k: v for k, v in hub_kwargs.items() if v not in (None, False)}
    try:
        return snapshot_download(repo_id, allow_patterns=patterns, **hub_kwargs)
    except Exception as err:
        raise OSError(
            f"{repo_id!r} is not a local file or directory, and fetching it from the Hugging Face Hub failed: {err}"
        ) from err


# transformers 5 makes BertTokenizer and BertTokenizerFast one class; so do we.
SqueezeBertTokenizer = SqueezeBertTokenizerFast
