"""BM25 over a version's own texts: the lexical arm of a retrieval pipeline.

bm25s does the work (a well-kept, sparse-matrix BM25 whose scores match Lucene's): its
tokenizer with English stop words and PyStemmer's Snowball stemmer, the Lucene variant of
BM25 with k1 and b. Every choice is recorded in ``LexicalSpec.to_metadata`` so a report, or
the query side, can rebuild exactly the same scorer. Documents with no query term in common
score 0 and are left out, as a Lucene index returns only documents that match.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
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


# --- lexical vectors stored in a version -------------------------------------------------

LEXICAL_VECTOR = "reindex_bm25"
"""The sparse vector a version made with ``--lexical bm25`` holds its term weights in."""


def term_id(term: str) -> int:
    """A term's sparse index: 32 bits of its BLAKE2b hash, so the vocabulary never needs storing and
    a term met first in a later sync gets the same index as in the build (as fastembed's BM25 does
    with murmur3). Two terms of one corpus share an index with odds about n^2 / 2^33."""
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "little")


@dataclass(frozen=True)
class StoredLexical:
    """What a version records (``index_params["lexical"]``) so every writer and the query side
    compute the same sparse vectors: the BM25 settings, the average document length the build
    measured (fixed for the version's life, so a sync never rewrites unchanged documents), and the
    sparse vector's name. The store applies IDF itself (Qdrant's ``Modifier.IDF``), which stays
    true as documents come and go; only the Lucene variant matches it, so only that is stored."""

    spec: LexicalSpec
    avgdl: float
    vector: str = LEXICAL_VECTOR

    def __post_init__(self) -> None:
        if self.spec.method != "lucene":
            raise UsageError(
                f"a stored lexical index uses BM25's Lucene variant (the store's IDF), not {self.spec.method!r}"
            )
        if not self.avgdl > 0:
            raise UsageError(f"the average document length must be positive, got {self.avgdl!r}")

    def to_params(self) -> dict[str, Any]:
        return {"kind": "bm25", **asdict(self.spec), "avgdl": self.avgdl, "vector": self.vector}

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> StoredLexical | StoreBM25 | None:
        """A version's lexical index as it recorded it: weights the tool computes (``StoredLexical``),
        or a BM25 the store computes from the text itself (``StoreBM25``); None without one."""
        lexical = (params or {}).get("lexical")
        if not lexical:
            return None
        if lexical.get("engine") == STORE_ENGINE:
            return StoreBM25.from_params(lexical)
        fields = {k: lexical[k] for k in ("method", "k1", "b", "stemmer", "stopwords", "lower") if k in lexical}
        return cls(LexicalSpec(**fields), float(lexical["avgdl"]), str(lexical.get("vector", LEXICAL_VECTOR)))


STORE_ENGINE = "store"
"""``index_params["lexical"]["engine"]`` of a version whose store makes its BM25 vectors (Milvus)."""

STANDARD_ANALYZER: dict[str, Any] = {"tokenizer": "standard"}
"""Milvus's standard analyzer: Unicode word boundaries, lower-cased. Milvus Lite (3.2) applies no
analyzer filters (stemmers and stop words are accepted and ignored), so only this is recorded."""


@dataclass(frozen=True)
class StoreBM25:
    """A version whose store computes BM25 itself (Milvus's BM25 function): it tokenizes a text field
    with the recorded analyzer, keeps the statistics (document frequencies, average length) current as
    documents come and go, and scores a query's text. The tool writes and sends texts, never weights.
    ``k1`` and ``b`` are Milvus's defaults, which Milvus Lite uses whatever the index asks."""

    analyzer: dict[str, Any]
    k1: float = 1.2
    b: float = 0.75
    vector: str = LEXICAL_VECTOR

    def __post_init__(self) -> None:
        if not isinstance(self.analyzer, dict) or not isinstance(self.analyzer.get("tokenizer"), str):
            raise UsageError(f"a store's BM25 needs an analyzer with a tokenizer, not {self.analyzer!r}")
        if not (self.k1 >= 0 and 0 <= self.b <= 1):
            raise UsageError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={self.k1:g}, b={self.b:g}")

    def to_params(self) -> dict[str, Any]:
        return {"kind": "bm25", "engine": STORE_ENGINE, **asdict(self)}

    @classmethod
    def from_params(cls, lexical: dict[str, Any]) -> StoreBM25:
        return cls(
            dict(lexical.get("analyzer") or STANDARD_ANALYZER),
            float(lexical.get("k1", 1.2)),
            float(lexical.get("b", 0.75)),
            str(lexical.get("vector", LEXICAL_VECTOR)),
        )


class LexicalEncoder:
    """Texts to BM25 sparse vectors, ``{"indices": [...], "values": [...]}``, as a version stores them.

    A document's value for a term is its BM25 term-frequency part, tf / (tf + k1 (1 - b + b dl / avgdl));
    a query's is the term's count. The store multiplies by IDF, so a dot product is the document's
    BM25 score for the query, as bm25s computes it with the same settings and average length.
    Where the store computes BM25 itself (``StoreBM25``) a document's and a query's input is its
    text, ``{"text": ...}``.
    """

    def __init__(self, stored: StoredLexical | StoreBM25):
        self.stored = stored
        # A store that computes BM25 itself takes the texts as they are, documents and queries alike.
        self._tokenizer = None if isinstance(stored, StoreBM25) else stored.spec.tokenizer()
        self._lock = threading.Lock()  # writers call from several threads; the tokenizer keeps state

    def terms(self, texts: Sequence[str]) -> list[list[str]]:
        """Each text's terms after lower-casing, stop words and stemming (the version's settings)."""
        # update_vocab: the tokenizer's own vocabulary is not used for indices (term_id is), but
        # without it bm25s drops terms it has not seen
        if self._tokenizer is None:
            raise UsageError("a store that computes BM25 itself keeps its terms to itself")
        with self._lock:
            tokens = self._tokenizer.tokenize(list(texts), return_as="string", show_progress=False)
            self._tokenizer.reset_vocab()
        return [[t for t in doc if t] for doc in tokens]

    def documents(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        if isinstance(self.stored, StoreBM25):
            return [{"text": text} for text in texts]
        spec, avgdl = self.stored.spec, self.stored.avgdl
        out = []
        for terms in self.terms(texts):
            counts = Counter(term_id(t) for t in terms)
            norm = spec.k1 * (1 - spec.b + spec.b * len(terms) / avgdl)
            indices: list[Any] = sorted(counts)
            out.append({"indices": indices, "values": [counts[i] / (counts[i] + norm) for i in indices]})
        return out

    def queries(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        if isinstance(self.stored, StoreBM25):
            return [{"text": text} for text in texts]
        out = []
        for terms in self.terms(texts):
            counts = Counter(term_id(t) for t in terms)
            ids: list[Any] = sorted(counts)
            out.append({"indices": ids, "values": [float(counts[i]) for i in ids]})
        return out


def average_length(texts: Iterable[str], spec: LexicalSpec, chunk: int = 1000) -> tuple[float, int]:
    """(mean number of terms per text, texts read), streamed a chunk at a time."""
    encoder = LexicalEncoder(StoredLexical(spec, 1.0))
    total = n = 0
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) >= chunk:
            total += sum(len(t) for t in encoder.terms(batch))
            n, batch = n + len(batch), []
    if batch:
        total += sum(len(t) for t in encoder.terms(batch))
        n += len(batch)
    return (total / n if n else 0.0), n


class ApplicationSparse:
    """An application's own sparse encoder for its own sparse vector (langchain-qdrant's hybrid mode,
    say), for the query side: the tool never writes that vector, it only queries it with the
    application's encoder, as the application does. ``encode(texts)`` returns, per text, a dict with
    ``indices`` and ``values`` or an object with those attributes (LangChain's ``SparseVector``)."""

    def __init__(self, vector: str, encode: Any):
        if not isinstance(vector, str) or not vector:
            raise UsageError("the application's sparse vector needs its name", hint="sparse_vector='langchain-sparse'")
        if not callable(encode):
            raise UsageError("sparse_encoder must be callable: texts -> sparse vectors")
        self.stored = _Named(vector)
        self._encode = encode

    def queries(self, texts: Sequence[str]) -> list[dict[str, list]]:
        out = []
        for v in self._encode(list(texts)):
            indices = v["indices"] if isinstance(v, dict) else v.indices
            values = v["values"] if isinstance(v, dict) else v.values
            sparse: dict[str, list[Any]] = {"indices": [int(i) for i in indices], "values": [float(x) for x in values]}
            out.append(sparse)
        return out


@dataclass(frozen=True)
class _Named:
    vector: str
