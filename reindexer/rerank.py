"""A cross-encoder reranking stage: the first stage's top N rescored by a sentence-transformers CrossEncoder.

The reranker reads (query, document text) pairs, so it belongs to no index version: the same folder
reranks whichever version answered, over that version's own texts. Its order replaces the first
stage's over the top N; the rest keep the first stage's order below them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reindexer.errors import UsageError

DEFAULT_TOP = 50


def check_cross_encoder(path: str | Path) -> Path:
    """The folder, when it holds a sequence-classification model a CrossEncoder loads; else exit 2."""
    folder = Path(path).expanduser()
    config = folder / "config.json"
    if not config.is_file():
        raise UsageError(f"{folder} is not a model folder (no config.json)", hint="pass a CrossEncoder's saved folder")
    try:
        architectures = json.loads(config.read_text()).get("architectures") or []
    except (json.JSONDecodeError, OSError) as exc:
        raise UsageError(f"{config} cannot be read as JSON: {exc}") from None
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        raise UsageError(
            f"{folder} is not a cross-encoder: its model is {', '.join(map(str, architectures)) or 'unnamed'}, "
            "not a sequence classifier",
            hint="a rerank folder is a sentence-transformers CrossEncoder saved with CrossEncoder.save(PATH); "
            "an embedding model (a bi-encoder) cannot rerank",
        )
    return folder


class Reranker:
    """``rerank(query, [(doc id, text), ...])`` -> the same ids in the cross-encoder's order, with its scores."""

    def __init__(self, path: str | Path, *, top: int = DEFAULT_TOP, device: str | None = None, batch_size: int = 32):
        if top < 1:
            raise UsageError(f"the reranking depth must be at least 1, got {top}")
        self.path = check_cross_encoder(path)
        self.top = top
        self.batch_size = batch_size
        self._device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                from sentence_transformers import CrossEncoder

                self._model = CrossEncoder(
                    str(self.path), device=self._device, local_files_only=True, trust_remote_code=False
                )
            return self._model

    def describe(self) -> dict[str, Any]:
        return {"model": str(self.path), "top": self.top}

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        got = self.model.predict([(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False)
        return [float(x) for x in got]

    def rerank(self, query: str, ranked: Sequence[tuple[str, str]]) -> list[tuple[str, float]]:
        """The top ``top`` of ``ranked`` (doc id, text; best first) reordered by the cross-encoder, then the rest.

        Scores are the cross-encoder's over the head; the tail gets scores below the head's lowest,
        falling by one per place, so any ranking by score keeps this order.
        """
        head, tail = list(ranked[: self.top]), list(ranked[self.top :])
        scored = sorted(
            zip((d for d, _ in head), self.scores(query, [t for _, t in head]), strict=True),
            key=lambda item: (-item[1], item[0]),
        )
        floor = min((s for _, s in scored), default=0.0)
        return scored + [(d, floor - 1.0 - i) for i, (d, _) in enumerate(tail)]


def rerank_hits(reranker: Reranker, query: str, hits: Sequence[Any], text_field: str) -> list[Any]:
    """Store hits (``doc_id``, ``score``, ``payload``) reordered by the cross-encoder over the texts
    their payloads hold under ``text_field``, each with the score the order was made by."""
    from dataclasses import replace

    from reindexer.sources.base import extract_text

    by_id = {h.doc_id: h for h in hits}
    order = reranker.rerank(query, [(h.doc_id, extract_text(h.payload, text_field) or "") for h in hits])
    return [replace(by_id[doc_id], score=score) for doc_id, score in order]
