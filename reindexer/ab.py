"""A/B(/n) evaluation of index versions of one logical collection, and the promotion gate.

Each version is searched through the adapter with queries encoded by that
version's own model; the evaluation library does the scoring and statistics.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reindexer.build.steps import version_text_field
from reindexer.build.stream import lexical_encoder
from reindexer.embedding import Embedder
from reindexer.encoders import EncoderSpec, load_encoder
from reindexer.errors import NotFoundError, UsageError
from reindexer.evaluation import (
    EvaluationResult,
    Gate,
    check_doc_ids,
    compare_unlabelled,
    evaluate,
    load_qrels,
    load_queries,
    load_query_log,
)
from reindexer.evaluation.inputs import align
from reindexer.evaluation.metrics import rank
from reindexer.evaluation.pipelines import LEXICAL_ARM, PIPELINES, RERANKED, Fusion, arm, questions, rrf
from reindexer.evaluation.runner import Searcher, UnlabelledResult
from reindexer.lexical import LexicalIndex, LexicalSpec, StoredLexical
from reindexer.lookup import find_version, row_id
from reindexer.rerank import Reranker
from reindexer.sources.base import extract_text
from reindexer.state import IndexVersion, LogicalCollection
from reindexer.version_search import search_version
from reindexer.workspace import Workspace

SEARCHABLE = ("live", "retired", "built", "verified", "evaluated")


@dataclass
class Judgements:
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    source: str

    @classmethod
    def load(cls, queries_path: str | Path, qrels_path: str | Path) -> Judgements:
        queries, qrels = load_queries(queries_path), load_qrels(qrels_path)
        align(queries, qrels)  # nothing to score is refused now, before a model is loaded or a shadow built
        return cls(queries, qrels, f"{queries_path} + {qrels_path}")


def label(v: IndexVersion) -> str:
    return f"v{v.version}"


def resolve_versions(ws: Workspace, lc: LogicalCollection, spec: str | None, *, minimum: int = 1) -> list[IndexVersion]:
    """``live,shadow`` (default), or version numbers / physical names; the first is the baseline.

    One version (``--versions v1``, or the default when there is no built shadow yet)
    is an absolute evaluation: the baseline a team records before it fine-tunes.
    ``minimum=2`` is for comparisons that need a pair (the label-free one).
    """
    versions = ws.state.versions(row_id(lc))
    physical = ws.store.resolve(lc.name)
    out: list[IndexVersion] = []
    for ref in (spec or "live,shadow").split(","):
        ref = ref.strip()
        if ref == "live":
            found = next((v for v in versions if v.physical_name == physical), None)
            if found is None:
                raise NotFoundError(f"{lc.name} has no live version")
        elif ref == "shadow":
            shadows = [v for v in versions if v.status in ("built", "verified", "evaluated")]
            if not shadows and spec is None and minimum <= 1 and out:
                continue  # the default live,shadow with no shadow yet: evaluate the live version alone
            if not shadows:
                raise NotFoundError(
                    f"{lc.name} has no built shadow version",
                    hint="build one with `reindex apply PLAN --no-cutover`, or name versions: --versions v1,v2",
                )
            found = shadows[-1]
        else:
            found = find_version(ws, lc, ref)
        if found.status not in SEARCHABLE or not ws.store.collection_exists(found.physical_name):
            raise UsageError(f"v{found.version} of {lc.name} cannot be searched (status {found.status})")
        if found.id not in {v.id for v in out}:
            out.append(found)
    if len(out) < minimum:
        raise UsageError("this comparison needs at least two different versions", hint="--versions v1,v2")
    return out


def encoder_for(ws: Workspace, version: IndexVersion) -> Embedder:
    """The query encoder the query side rebuilds from the version's metadata (its files checked)."""
    info = ws.store.describe(version.physical_name)
    spec = EncoderSpec.from_metadata(version.physical_name, info.metadata, info.dim, info.metric, ws.state)
    return load_encoder(spec, device=ws.config.device, batch_size=ws.embed_batch_size)


def searcher_for(
    ws: Workspace,
    version: IndexVersion,
    mode: str = "dense",
    fusion: Fusion | None = None,
    encoder: Embedder | None = None,
):
    """Rank with the encoders the query side rebuilds from the version's metadata, by the same path
    (``mode`` as the Searcher's: lexical and hybrid read the version's stored BM25 vectors);
    ``encoder``, where the caller holds the version's already, is not loaded again."""
    store = ws.store
    encoder = encoder or encoder_for(ws, version)
    lexical = lexical_encoder(version) if mode != "dense" else None

    # Adapters report euclid as a distance (lower is better); the metrics rank by score, higher first.
    sign = -1.0 if version.metric == "euclid" and mode == "dense" else 1.0

    def search(texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        answers = search_version(
            store, version.physical_name, encoder, texts, k, mode=mode, lexical=lexical, fusion=fusion
        )
        return [[(h.doc_id, sign * h.score) for h in hits] for hits in answers]

    return search


def version_texts(ws: Workspace, lc: LogicalCollection, version: IndexVersion) -> list[tuple[str, str]]:
    """(doc id, text) of every point of ``version`` that holds a text, in doc-id order: the text the
    version embedded, by the text field (or template) its metadata records."""
    text_field = version_text_field(ws, lc, version)
    pairs = []
    for page in ws.store.scroll(version.physical_name, with_vectors=False):
        for point in page:
            text = extract_text(point.payload or {}, text_field)
            if text is not None:
                pairs.append((point.doc_id, text))
    if not pairs:
        raise UsageError(
            f"v{version.version} of {lc.name} holds no text under {text_field!r}, so it has no lexical pipeline",
            hint="evaluate --pipelines dense, or adopt the collection with the --text-field its texts are under",
        )
    return sorted(pairs)


class PipelineArms:
    """The searchers of every (version, pipeline) arm: dense from the version's own model, lexical
    from BM25 over its own texts (one index per distinct corpus), hybrid as their RRF fusion."""

    def __init__(
        self, ws: Workspace, lc: LogicalCollection, spec: LexicalSpec, fusion: Fusion, reranker: Reranker | None = None
    ):
        self.ws, self.lc, self.spec, self.fusion, self.reranker = ws, lc, spec, fusion, reranker
        # by physical name (one model load per version, whatever its arms); the lexical indexes by a
        # digest of their corpus, so equal texts share one
        self._encoders: dict[str, Embedder] = {}
        self._dense: dict[str, Searcher] = {}
        self._lexical: dict[str, LexicalIndex] = {}
        self._corpus_of: dict[str, str] = {}

    def _searcher(self, version: IndexVersion, mode: str) -> Searcher:
        if version.physical_name not in self._encoders:
            self._encoders[version.physical_name] = encoder_for(self.ws, version)
        return searcher_for(self.ws, version, mode, self.fusion, self._encoders[version.physical_name])

    def dense(self, version: IndexVersion) -> Searcher:
        if version.physical_name not in self._dense:
            self._dense[version.physical_name] = self._searcher(version, "dense")
        return self._dense[version.physical_name]

    def lexical_search(self, version: IndexVersion) -> Searcher:
        """BM25 over the version's texts: its stored vectors where it keeps them (what the Searcher reads),
        else an index made here with the same settings."""
        return self._searcher(version, "lexical") if self.stored(version) else self.lexical(version).search

    def stored(self, version: IndexVersion) -> bool:
        return StoredLexical.from_params(version.index_params) is not None

    def lexical(self, version: IndexVersion) -> LexicalIndex:
        if version.physical_name not in self._corpus_of:
            pairs = version_texts(self.ws, self.lc, version)
            digest = hashlib.sha256(repr(pairs).encode()).hexdigest()
            if digest not in self._lexical:
                self._lexical[digest] = LexicalIndex(pairs, self.spec)
            self._corpus_of[version.physical_name] = digest
        return self._lexical[self._corpus_of[version.physical_name]]

    def hybrid(self, version: IndexVersion) -> Searcher:
        if self.stored(version):  # fused in the store, as the Searcher's hybrid mode does
            return self._searcher(version, "hybrid")
        dense, lexical, fusion = self.dense(version), self.lexical(version), self.fusion

        def search(texts: list[str], k: int) -> list[list[tuple[str, float]]]:
            depth = max(k, fusion.prefetch)
            runs = zip(dense(texts, depth), lexical.search(texts, depth), strict=True)
            return [rrf([d, lx], fusion.k)[:k] for d, lx in runs]

        return search

    def reranked(self, version: IndexVersion, first: Searcher) -> Searcher:
        """``first``'s top N rescored by the cross-encoder over the version's own texts."""
        reranker = self.reranker
        assert reranker is not None  # run_evaluation refuses a rerank pipeline without one
        text_field = version_text_field(self.ws, self.lc, version)

        def search(texts: list[str], k: int) -> list[list[tuple[str, float]]]:
            out = []
            for query, hits in zip(texts, first(texts, max(k, reranker.top)), strict=True):
                ranked = [d for d, _ in rank(hits)]
                found = {p.doc_id: p for p in self.ws.store.retrieve(version.physical_name, ranked)}
                pairs = [(d, extract_text(found[d].payload, text_field) or "") for d in ranked if d in found]
                out.append(reranker.rerank(query, pairs)[:k])
            return out

        return search

    def searchers(self, versions: list[IndexVersion], pipelines: tuple[str, ...]) -> dict[str, Searcher]:
        out: dict[str, Searcher] = {label(v): self.dense(v) for v in versions}
        if "lexical" in pipelines:
            out[LEXICAL_ARM] = self.lexical_search(versions[0])
        if "hybrid" in pipelines:
            out.update({arm(label(v), "hybrid"): self.hybrid(v) for v in versions})
        for reranked in (p for p in RERANKED if p in pipelines):
            for v in versions:
                first = self.dense(v) if reranked.startswith("dense") else self.hybrid(v)
                out[arm(label(v), reranked)] = self.reranked(v, first)
        return out

    @staticmethod
    def names(versions: list[IndexVersion], pipelines: tuple[str, ...]) -> dict[str, tuple[str | None, str]]:
        """searcher name -> (version, pipeline) of every arm that is not a version's dense one."""
        out: dict[str, tuple[str | None, str]] = {}
        if "lexical" in pipelines:
            out[LEXICAL_ARM] = (None, "lexical")
        for pipeline in (p for p in ("hybrid", *RERANKED) if p in pipelines):
            out.update({arm(label(v), pipeline): (label(v), pipeline) for v in versions})
        return out

    def describe(self, versions: list[IndexVersion], pipelines: tuple[str, ...]) -> dict[str, Any]:
        """What the arms ran, for the reports (empty for dense alone)."""
        if pipelines == ("dense",):
            return {}
        info: dict[str, Any] = {"pipelines": list(pipelines), "lexical": self.spec.to_metadata()}
        info["lexical"]["corpus"] = "the baseline version's texts; each hybrid arm fuses its own version's"
        info["lexical"]["stored"] = {label(v): self.stored(v) for v in versions}
        if "hybrid" in pipelines or "hybrid+rerank" in pipelines:
            info["fusion"] = self.fusion.to_metadata()
        if self.reranker is not None:
            info["rerank"] = self.reranker.describe()
        return info


def check_reranker(pipelines: tuple[str, ...], reranker: Reranker | None) -> None:
    """A rerank pipeline needs a reranker, and a reranker a pipeline that uses it (exit 2 otherwise)."""
    wanted = [p for p in pipelines if p in RERANKED]
    if wanted and reranker is None:
        raise UsageError(
            f"the {' and '.join(wanted)} pipeline needs a cross-encoder",
            hint="pass --rerank PATH (a CrossEncoder folder)",
        )
    if reranker is not None and not wanted:
        raise UsageError(
            "--rerank names a cross-encoder, but no pipeline uses it",
            hint="add dense+rerank or hybrid+rerank to --pipelines",
        )


def run_evaluation(
    ws: Workspace,
    lc: LogicalCollection,
    versions: list[IndexVersion],
    judgements: Judgements,
    k: int = 10,
    gate: Gate | None = None,
    seed: int = 0,
    at: list[int] | None = None,
    depth: int | None = None,
    pipelines: tuple[str, ...] = ("dense",),
    reranker: Reranker | None = None,
) -> EvaluationResult:
    # Only the judged ids are looked up: the ledger is never read whole.
    judged = sorted({doc_id for graded in judgements.qrels.values() for doc_id in graded})
    known = set(ws.state.ledger_hashes(row_id(versions[0]), judged))
    check = check_doc_ids(judgements.qrels, known)
    if known and check.judged and check.unknown == check.judged:
        raise UsageError(
            f"none of the {check.judged} judged document ids exist in {lc.name} (e.g. {', '.join(check.examples)})",
            hint="qrels must name the collection's document ids",
        )
    if gate is not None and len(versions) < 2:
        raise UsageError(
            "a gate judges a candidate against a baseline; one version has nothing to compare",
            hint="drop --gate to record the baseline, or name two versions: --versions v1,v2",
        )
    gate_ks = list(gate.ks) if gate else []
    ks = sorted({k, *(at or []), *gate_ks}) if at else _with_defaults(sorted({k, *gate_ks}))
    if gate is not None:
        pipelines = tuple(p for p in PIPELINES if p in {*pipelines, *gate.pipelines})
    check_reranker(pipelines, reranker)
    arms = PipelineArms(ws, lc, LexicalSpec(), Fusion(prefetch=max(100, depth or 0, *ks)), reranker)
    searchers = arms.searchers(versions, pipelines)
    baseline = label(versions[0])
    result = evaluate(
        searchers,
        judgements.queries,
        judgements.qrels,
        k=k,
        ks=ks,
        baseline=baseline,
        seed=seed,
        depth=depth,
        pairs=questions(baseline, [label(v) for v in versions[1:]], pipelines),
        pipelines=arms.describe(versions, pipelines),
        arms=arms.names(versions, pipelines),
    )
    recorded: dict[str, Any] = {"pipelines": list(pipelines)} if pipelines != ("dense",) else {}
    ws.state.audit(
        "eval",
        lc.name,
        versions=[label(v) for v in versions],
        **recorded,
        queries=len(result.query_ids),
        means={v: {m: float(x) for m, x in result.means[v].items() if m.endswith(f"@{k}")} for v in result.versions},
    )
    return result


def _with_defaults(ks: list[int]) -> list[int]:
    top = max(ks)
    return sorted({*ks, *(c for c in (1, 3, 5, 10, 20, 50, 100) if c <= top)})


def run_unlabelled(ws: Workspace, versions: list[IndexVersion], log_path: str | Path, k: int = 10) -> UnlabelledResult:
    queries = load_query_log(log_path)
    searchers = {label(v): searcher_for(ws, v) for v in versions}
    return compare_unlabelled(searchers, queries, k=k, baseline=label(versions[0]))


def summary(result: EvaluationResult, k: int = 10) -> dict[str, Any]:
    """The headline numbers, for logs and the apply result."""
    out: dict[str, Any] = {"queries": len(result.query_ids), "versions": {}}
    for v in result.versions:
        out["versions"][v] = {
            m: round(float(x), 4)
            for m, x in result.means[v].items()
            if m in (f"ndcg@{k}", f"recall@{k}", f"mrr@{k}", f"map@{k}")
        }
    return out
