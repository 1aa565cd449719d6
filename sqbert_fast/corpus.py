"""Real English sentences from text already on the machine, for accuracy checks and scoring benchmarks.

Nobody here wrote them: they are the prose of the Python standard library's docstrings (module, class and
function documentation written by CPython's contributors), split into sentences. No download, no random
vocabulary; the same interpreter version gives the same sentences in the same order.

    from sqbert_fast.corpus import real_sentences
    texts = real_sentences(2000)
"""

from __future__ import annotations

import ast
import functools
import os
import re
import sysconfig

__all__ = ["real_sentences"]

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_CODE = re.compile(r"[{}\[\]<>=_|\\`$#@~^]|\(\)|\.\w+\(|::|\s-{1,2}\w|\w\.\w")


def _docstrings(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                yield doc


def _sentences(doc: str):
    # paragraphs of prose only: indented blocks and doctest lines are code
    for para in re.split(r"\n\s*\n", doc):
        lines = para.splitlines()
        if any(line.startswith((" ", "\t", ">>>", "...")) for line in lines):
            continue
        text = " ".join(line.strip() for line in lines)
        for s in _SPLIT.split(text):
            s = s.strip()
            words = s.split()
            if not 6 <= len(words) <= 60 or not s[0].isupper() or s[-1] not in ".!?":
                continue
            if _CODE.search(s) or sum(c.isalpha() or c == " " for c in s) < 0.9 * len(s):
                continue
            yield s


@functools.lru_cache(maxsize=4)
def _all_sentences() -> tuple[str, ...]:
    root = sysconfig.get_paths()["stdlib"]
    seen: set[str] = set()
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("test", "tests", "idlelib", "site-packages",
                                                                "__pycache__", "lib2to3", "turtledemo"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            for doc in _docstrings(os.path.join(dirpath, name)):
                for s in _sentences(doc):
                    if s not in seen:
                        seen.add(s)
                        out.append(s)
    return tuple(out)


def real_sentences(n: int | None = None) -> list[str]:
    """The first ``n`` (all when None) distinct prose sentences of the standard library's docstrings, in a fixed
    order (files sorted by path). Raises if fewer than ``n`` exist."""
    sents = _all_sentences()
    if n is not None:
        if len(sents) < n:
            raise ValueError(f"only {len(sents)} sentences in this Python's standard library docstrings, {n} asked")
        sents = sents[:n]
    return list(sents)
