"""Batch offline scoring: files (JSONL, CSV/TSV, Parquet, text) in, predictions out, in input order.

    import sqbert_fast as sqf
    for result in sqf.score("model_dir", "reviews.jsonl", task="classify"):
        ...
    scorer = sqf.Scorer("model_dir", task="embed")          # load once, score many inputs
    scorer.score_file("docs.parquet", "embeddings.parquet", resume=True)

The command is ``sqbert-fast score MODEL INPUT OUTPUT --task ...``; ``sqbert_fast.scoring.ray`` runs the
same scorer on a Ray cluster.
"""

from .readers import InputFormatError
from .scorer import Scorer, Summary, score
from .writers import ResumeError

__all__ = ["InputFormatError", "ResumeError", "Scorer", "Summary", "score"]
