"""BM25 over a version's own texts: the lexical arm of a retrieval pipeline.

bm25s does the work (a well-kept, sparse-matrix BM25 whose scores match Lucene's): its
tokenizer with English stop words and PyStemmer's Snowball stemmer, the Lucene variant of
BM25 with k1 and b. Every choice is recorded in ``LexicalSpec.to_metadata`` so a report, or
the query side, can rebuild exactly the same scorer. Documents with no query term in common
score 0 and are left out, as a Lucene index returns only documents that match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from reindexer.errors import UsageError
from reindexer.extras import require

STEMMERS = ("english", "none")
METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")


@dataclass(frozen=True)
class LexicalSpec:
    """How texts become BM25 scores; part of what a lexical or hybrid result means."""

    method: str = "lucene"
    k1: float = 1.5
    b: float = 0.75
    stemmer: str = "english"
    """A Snowball stemmer (PyStemmer) by language name, or "none"."""
    stopwords: str = "en"
    """bm25s's stop-word list by language code, or "none"."""
    lower: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"unknown BM25 method {self.method!r}", hint=f"choose one of {', '.join(METHODS)}")
        if self.stemmer not in STEMMERS:
            raise UsageError(f"unknown stemmer {self.stemmer!r}", hint=f"choose one of {', '.join(STEMMERS)}")
        if not (self.k1 >= 0 and 0 <= self.b <= 1):
            raise UsageError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={self.k1:g}, b={self.b:g}")

    def to_metadata(self) -> dict[str, Any]:
        return {"implementation": f"bm25s {_bm25s().__version__}", "tokenizer": "bm25s", **asdict(self)}

    def tokenizer(self) -> Any:
        bm25s = _bm25s()
        stemmer = None
        if self.stemmer != "none":
            stemmer = require("Stemmer", "hybrid", "Snowball stemming for BM25").Stemmer(self.stemmer)
        stopwords: Any = [] if self.stopwords == "none" else self.stopwords
        return bm25s.tokenization.Tokenizer(lower=self.lower, stopwords=stopwords, stemmer=stemmer)


def _bm25s() -> Any:
    return require("bm25s", "hybrid", "BM25 for lexical and hybrid pipelines")


class LexicalIndex:
    """BM25 over ``(doc id, text)`` pairs, searched like any other arm: texts in, ranked hits out."""

    def __init__(self, documents: Iterable[tuple[str, str]], spec: LexicalSpec | None = None):
        self.spec = spec or LexicalSpec()
        pairs = list(documents)
        self.doc_ids = [doc_id for doc_id, _ in pairs]
        self._tokenizer = self.spec.tokenizer()
        self._retriever = _bm25s().BM25(k1=self.spec.k1, b=self.spec.b, method=self.spec.method)
        if pairs:
            corpus = self._tokenizer.tokenize([text for _, text in pairs], return_as="tuple", show_progress=False)
            self._retriever.index(corpus, show_progress=False)

    def __len__(self) -> int:
        return len(self.doc_ids)

    def search(self, texts: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """The top ``k`` documents of each query that share a term with it, best first."""
        if not self.doc_ids:
            return [[] for _ in texts]
        ids = self._tokenizer.tokenize(list(texts), update_vocab=False, return_as="ids", show_progress=False)
        out: list[list[tuple[str, float]]] = []
        k = min(k, len(self.doc_ids))
        for tokens in ids:
            if not tokens:  # no query term is in the corpus' vocabulary: nothing matches
                out.append([])
                continue
            rows, scores = self._retriever.retrieve([tokens], k=k, show_progress=False, n_threads=1)
            out.append([(self.doc_ids[int(i)], float(s)) for i, s in zip(rows[0], scores[0], strict=True) if s > 0])
        return out
