"""Verifying an index version: is it exactly what its ledger and its source say, made by its model?

``verify_version`` compares the counts of store, ledger and (where given) source ids, then checks
points in one of two ways. The *full pass* compares every stored point with the ledger (and the
source's ids) a page at a time and checks every point's model tag: it runs where the version holds
at most ``VERIFY_POINTS`` points, where the counts disagree (it names the missing and extra ids a
repair needs), or when asked. Otherwise a *sample*: ``VERIFY_POINTS`` ids drawn uniformly from the
ledger are looked up in the store (present, tagged with this model), and the ledger's ids are
checked against the source's, so that the time does not grow with the store's size; the report
states how many points it checked and the chance it had of finding a given fraction of bad ones.
Both check the collection's query-side metadata and re-embed a small sample to compare its vectors
(and its BM25 vectors, where the version keeps a lexical index); right after a build in the same
process, the vectors that build made of those texts stand for the re-embedding (reindexer.vector_memo).
It only reports (``VerifyReport``); ``require_verified`` turns a failed report into the error a verb
raises. Nothing here repairs: a failed shadow is left for inspection.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reindexer.adapters.base import MODEL_KEY, VectorStore
from reindexer.build.steps import version_text_field
from reindexer.build.stream import lexical_encoder, memo_owner
from reindexer.embedding import Embedder
from reindexer.encoders import model_metadata
from reindexer.errors import VerificationError
from reindexer.idset import IdSet
from reindexer.lexical import LexicalEncoder
from reindexer.model_identity import ModelSettings
from reindexer.model_registry import embedder_for
from reindexer.runtimes import REEMBED_MIN_COSINE, reembed_min_cosine
from reindexer.sampling import Reservoir
from reindexer.sources.base import extract_text
from reindexer.state import IndexVersion, LogicalCollection, ModelVersion
from reindexer.state.models import saved_id
from reindexer.vector_memo import encode_reusing, memos_of
from reindexer.vectors import cosine_rows
from reindexer.workspace import Workspace

VERIFY_SAMPLE = 16

#: What the default sample is sized to find: a fraction DETECT_FRACTION of a version's points missing
#: from the store or tagged with another model, found with probability at least DETECT_PROBABILITY.
DETECT_FRACTION = 0.001
DETECT_PROBABILITY = 0.99


def sample_size_for(fraction: float, probability: float) -> int:
    """The sample that finds a ``fraction`` of bad points with at least ``probability``.

    A uniform sample of n misses every bad point with probability at most (1 - f)^n (drawn
    without replacement, as here, the chance is lower still), so n = ceil(ln(1 - P) / ln(1 - f)).
    """
    return math.ceil(math.log(1 - probability) / math.log(1 - fraction))


def detection_probability(fraction: float, n: int) -> float:
    """The least chance that a uniform sample of ``n`` meets one of a ``fraction`` of bad points: 1 - (1 - f)^n."""
    return 1 - (1 - fraction) ** n


#: Points a verification checks when it samples: ln(0.01) / ln(0.999) = 4602.9, so 4603.
VERIFY_POINTS = sample_size_for(DETECT_FRACTION, DETECT_PROBABILITY)


VERIFY_MIN_COSINE = REEMBED_MIN_COSINE


#: The report's lists of bad points by id (what a repair forgets, deletes or re-embeds).
_ID_LISTS = ("missing_in_store", "extra_in_store", "missing_from_source", "not_in_ledger_source", "wrong_model")


@dataclass
class VerifyReport:
    store_count: int
    ledger_count: int
    source_count: int | None
    missing_in_store: list[str] = field(default_factory=list)
    extra_in_store: list[str] = field(default_factory=list)
    missing_from_source: list[str] = field(default_factory=list)
    not_in_ledger_source: list[str] = field(default_factory=list)
    wrong_model: list[str] = field(default_factory=list)
    # Query-side keys the collection's metadata lacks or has wrong (versions tagged by older releases).
    stale_metadata: list[str] = field(default_factory=list)
    sample_size: int = 0
    # Of the sample, how many vectors came from this process's build of the version rather than a new encode.
    sample_from_build: int = 0
    sample_min_cosine: float | None = None
    # Sampled points whose stored BM25 vector is not the one their text makes (a version with a lexical index).
    stale_lexical: list[str] = field(default_factory=list)
    # What the sample must reach: lower for a model whose vectors depend on their batch (dynamic int8).
    sample_floor: float = VERIFY_MIN_COSINE
    # How the points were checked: "full" (every point) or "sample" (points_checked of them, drawn with sample_seed).
    checked: str = "full"
    points_checked: int = 0
    full_reason: str | None = None  # why every point was checked
    sample_seed: int | None = None

    @property
    def detection_probability(self) -> float:
        """The least chance this check had of finding a DETECT_FRACTION of missing or mis-tagged points."""
        return 1.0 if self.checked == "full" else detection_probability(DETECT_FRACTION, self.points_checked)

    def coverage(self) -> str:
        """What was checked, in one sentence an operator can weigh."""
        if self.checked == "full":
            return f"checked every point ({self.full_reason})" if self.full_reason else "checked every point"
        return (
            f"checked a random sample of {self.points_checked} of {self.ledger_count} points: a fraction of "
            f"{DETECT_FRACTION:.1%} missing or wrong points would be found with probability at least "
            f"{self.detection_probability:.1%} (--full checks every point)"
        )

    @property
    def ok(self) -> bool:
        return (
            self.store_count == self.ledger_count
            and not self.missing_in_store
            and not self.extra_in_store
            and not self.missing_from_source
            and not self.not_in_ledger_source
            and not self.wrong_model
            and not self.stale_metadata
            and not self.stale_lexical
            and (self.sample_min_cosine is None or self.sample_min_cosine >= self.sample_floor)
        )

    def bad_ids(self) -> bool:
        """Whether points were found missing, stray, gone from the source or tagged with another model."""
        return any(getattr(self, name) for name in _ID_LISTS)

    def problems(self) -> list[str]:
        out = []
        if self.store_count != self.ledger_count:
            out.append(f"store holds {self.store_count} points, ledger {self.ledger_count}")
        for label, ids in (
            ("in the ledger but not the store", self.missing_in_store),
            ("in the store but not the ledger", self.extra_in_store),
            ("in the index but gone from the source", self.missing_from_source),
            ("in the source but not the index", self.not_in_ledger_source),
            ("tagged with another model", self.wrong_model),
            ("whose lexical vector is not the one their text makes", self.stale_lexical),
        ):
            if ids:
                out.append(f"{len(ids)} ids {label} (e.g. {', '.join(sorted(ids)[:5])})")
        if self.stale_metadata:
            out.append(
                f"collection metadata lacks or misstates {', '.join(self.stale_metadata)}, which the query "
                "side rebuilds its encoder from"
            )
        if self.sample_min_cosine is not None and self.sample_min_cosine < self.sample_floor:
            out.append(
                f"re-embedded sample disagrees with stored vectors (min cosine {self.sample_min_cosine:.4f}, "
                f"needs {self.sample_floor})"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "store_count": self.store_count,
            "ledger_count": self.ledger_count,
            "source_count": self.source_count,
            "problems": self.problems(),
            "sample_size": self.sample_size,
            "sample_from_build": self.sample_from_build,
            "sample_min_cosine": self.sample_min_cosine,
            "sample_floor": self.sample_floor,
            "checked": self.checked,
            "points_checked": self.points_checked,
            "full_reason": self.full_reason,
            "detection_fraction": DETECT_FRACTION,
            "detection_probability": self.detection_probability,
            "sample_seed": self.sample_seed,
            "coverage": self.coverage(),
        }


def verify_version(
    ws: Workspace,
    lc: LogicalCollection,
    version: IndexVersion,
    model: ModelVersion,
    source_ids: IdSet | Collection[str] | None = None,
    sample: int = VERIFY_SAMPLE,
    embedder: Embedder | None = None,
    seed: int | None = None,
    full: bool = False,
    points: int | None = None,
) -> VerifyReport:
    """Compare store, ledger and (optionally) source ids and model tags; re-embed ``sample`` points.

    The counts first. Every point is checked (``_full_pass``) when ``full``, when the counts
    disagree, or when the store holds at most ``points`` (default VERIFY_POINTS); otherwise
    ``points`` ledger ids drawn uniformly are (``_sample_pass``). ``seed`` draws the sample
    (default: a fresh one each run, recorded in the report, so that runs after runs look at
    other points; the full pass's re-embedded sample keeps seed 0: the same store, the same sample).
    """
    points = VERIFY_POINTS if points is None else points
    sources = _as_idset(source_ids)
    try:
        report = VerifyReport(
            store_count=ws.store.count(version.physical_name),
            ledger_count=ws.state.ledger_count(saved_id(version)),
            source_count=len(sources) if sources is not None else None,
            stale_metadata=stale_metadata(ws.store, lc, version, model),
        )
        report.full_reason = _full_pass_reason(report, full, points)
        if report.full_reason is None:
            chosen = _sample_pass(ws, version, model, sources, points, seed, sample, report)
        else:
            chosen = _full_pass(ws, version, model, sources, sample, 0 if seed is None else seed, report)
    finally:
        if sources is not None and sources is not source_ids:
            sources.close()
    if chosen:
        _check_sample(ws, lc, version, model, chosen, embedder, report)
    return report


def _full_pass_reason(report: VerifyReport, full: bool, points: int) -> str | None:
    """Why every point must be checked, or None where a sample says enough."""
    if full:
        return "a full pass was asked for"
    # Deletions and strays show in the counts; only the full pass names them, and a repair needs the names.
    if report.store_count != report.ledger_count:
        return f"counts disagree: store {report.store_count}, ledger {report.ledger_count}"
    if report.source_count is not None and report.source_count != report.ledger_count:
        return f"counts disagree: source {report.source_count}, ledger {report.ledger_count}"
    if report.store_count <= points:
        return f"{report.store_count} points <= sample size {points}"
    return None


def _full_pass(
    ws: Workspace,
    version: IndexVersion,
    model: ModelVersion,
    sources: IdSet | None,
    sample: int,
    seed: int,
    report: VerifyReport,
) -> list[str]:
    """Every point checked; returns the ids to re-embed.

    One pass over the store's pages, each checked against the ledger a page at a time; the
    store's ids go to an IdSet, against which the ledger's pages (and the source's ids) are
    checked after: no structure holds the version whole. The re-embedded sample is a reservoir
    over the pass, seeded, so the same store gives the same sample.
    """
    with IdSet() as in_store:
        found = _walk_store(ws, version, model, in_store, sources, Reservoir(sample, seed))
        vid = saved_id(version)
        report.missing_in_store = sorted(i for page in ws.state.ledger_id_pages(vid) for i in in_store.missing(page))
        if sources is not None:
            report.not_in_ledger_source = sorted(i for page in sources.pages() for i in in_store.missing(page))
    report.extra_in_store = sorted(found.extra)
    report.wrong_model = sorted(found.wrong)
    if sources is not None:
        report.missing_from_source = sorted(found.gone)
    report.checked, report.points_checked = "full", found.sample.met
    return found.sample.chosen


def _sample_pass(
    ws: Workspace,
    version: IndexVersion,
    model: ModelVersion,
    sources: IdSet | None,
    points: int,
    seed: int | None,
    sample: int,
    report: VerifyReport,
) -> list[str]:
    """``points`` ledger ids drawn uniformly, looked up in the store; the ledger's ids against the
    source's. Returns the ids to re-embed, drawn from those found.

    Runs only where the counts agree, so a point missing from the store means a stray one in its
    place: finding the missing ones is finding either. No vectors are read but the re-embedded few.
    """
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    vid = saved_id(version)
    chosen = ws.state.ledger_sample(vid, points, seed)
    per_point = ws.store.holds_point_tags(version.physical_name)
    present: set[str] = set()
    for start in range(0, len(chosen), 1024):
        for p in ws.store.retrieve(version.physical_name, chosen[start : start + 1024]):
            present.add(p.doc_id)
            # Without per-point tags the metadata and the re-embedded sample check the model (as in the full pass).
            if per_point and p.payload.get(MODEL_KEY) != model.short:
                report.wrong_model.append(p.doc_id)
    report.missing_in_store = sorted(i for i in chosen if i not in present)
    report.wrong_model.sort()
    if sources is not None:
        _ledger_against_source(ws, vid, sources, report)
    report.checked, report.points_checked, report.sample_seed = "sample", len(chosen), seed
    reembed: Reservoir[str] = Reservoir(sample, seed)
    for doc_id in chosen:
        if doc_id in present:
            reembed.offer(doc_id)
    return reembed.chosen


def _ledger_against_source(ws: Workspace, version_id: int, sources: IdSet, report: VerifyReport) -> None:
    """The ledger's ids the source lacks, a page at a time (state and the IdSet, not the store); and,
    where there are some, the source's ids the ledger lacks (as many: the counts agree)."""
    for page in ws.state.ledger_id_pages(version_id, page=10_000):
        report.missing_from_source.extend(sources.missing(page))
    if report.missing_from_source:
        for page in sources.pages(size=2000):
            known = ws.state.ledger_hashes(version_id, page)
            report.not_in_ledger_source.extend(i for i in page if i not in known)


def name_every_bad_point(
    ws: Workspace,
    lc: LogicalCollection,
    version: IndexVersion,
    model: ModelVersion,
    source_ids: IdSet | Collection[str] | None,
    report: VerifyReport,
) -> None:
    """Where a sample found bad points, put the full pass's lists of every one in ``report`` (a repair
    needs them all); the sample's re-embedding and its findings stand (nothing is re-embedded again)."""
    every = verify_version(ws, lc, version, model, source_ids, sample=0, full=True)
    for name in _ID_LISTS:
        setattr(report, name, getattr(every, name))
    report.checked, report.points_checked = "full", every.points_checked
    report.full_reason = "the sample found bad points, and a repair needs every one"


@dataclass
class _StoreFindings:
    sample: Reservoir
    extra: list[str] = field(default_factory=list)  # stored, not in the ledger
    wrong: list[str] = field(default_factory=list)  # tagged with another model
    gone: list[str] = field(default_factory=list)  # stored, not in the source


def _walk_store(
    ws: Workspace,
    version: IndexVersion,
    model: ModelVersion,
    in_store: IdSet,
    sources: IdSet | None,
    sample: Reservoir,
) -> _StoreFindings:
    """One pass over the store's pages, each checked against the ledger (and the source's ids) as it comes."""
    found = _StoreFindings(sample)
    per_point = ws.store.holds_point_tags(version.physical_name)
    for page in ws.store.scroll(version.physical_name, batch_size=ws.batch_size, with_vectors=False):
        ids = [p.doc_id for p in page]
        in_store.add(ids)
        known = ws.state.ledger_hashes(saved_id(version), ids)
        found.extra.extend(i for i in ids if i not in known)
        # Without per-point tags the model is recorded once, in the collection's metadata
        # (stale_metadata checks it); the sampled re-embedding checks the points.
        if per_point:
            found.wrong.extend(p.doc_id for p in page if p.payload.get(MODEL_KEY) != model.short)
        if sources is not None:
            found.gone.extend(sources.missing(ids))
        for doc_id in ids:
            sample.offer(doc_id)
    return found


def _check_sample(
    ws: Workspace,
    lc: LogicalCollection,
    version: IndexVersion,
    model: ModelVersion,
    chosen: list[str],
    embedder: Embedder | None,
    report: VerifyReport,
) -> None:
    """Re-embed the sampled points' texts; the report gets the sample's size and its lowest cosine."""
    points = list(ws.store.retrieve(version.physical_name, sorted(chosen), with_vectors=True))
    texts, stored = [], []
    text_field = version_text_field(ws, lc, version)
    lexical = lexical_encoder(version)
    for p in points:
        text = extract_text(p.payload, text_field)
        if text is not None:
            texts.append(text)
            stored.append(p.vector)
            if lexical is not None and not _same_sparse(p.other_vectors.get(lexical.stored.vector), text, lexical):
                report.stale_lexical.append(p.doc_id)
    if texts:
        embedder = embedder or embedder_for(model, device=ws.config.device, batch_size=ws.embed_batch_size)
        # Vectors this process's build made of these very texts with these weights are the model's vectors
        # of them: taken, not encoded again (reindexer.vector_memo); a text the build did not embed as
        # stored (another text field, a changed payload) is not found there and is embedded now.
        memos = memos_of(embedder)
        kept = memos.built if memos is not None and memos.built.owner == memo_owner(ws, version) else None
        fresh, report.sample_from_build = encode_reusing(embedder, kept, texts)
        report.sample_floor = reembed_min_cosine(ModelSettings.from_dict(model.settings))
        report.sample_size = len(texts)
        report.sample_min_cosine = float(cosine_rows(np.asarray(stored), fresh).min())


def _same_sparse(stored: Any, text: str, lexical: LexicalEncoder) -> bool:
    """Whether a stored BM25 vector is the one ``text`` makes (same terms, weights to float32)."""
    [fresh] = lexical.documents([text])
    if "text" in fresh:  # the store makes the vector from the text it holds: that text must be this one
        return isinstance(stored, dict) and stored.get("text") == text
    if not isinstance(stored, dict) or list(stored.get("indices", [])) != fresh["indices"]:
        return False
    return bool(np.allclose(stored.get("values", []), fresh["values"], rtol=1e-6, atol=0))


def ids_of(documents: Iterable[Any], chunk: int = 10_000) -> IdSet:
    """The ids of ``documents`` (anything with ``doc_id``), gathered into an IdSet a chunk at a time."""
    out = IdSet()
    batch: list[str] = []
    for d in documents:
        batch.append(d.doc_id)
        if len(batch) >= chunk:
            out.add(batch)
            batch = []
    out.add(batch)
    return out


def _as_idset(ids: IdSet | Collection[str] | None) -> IdSet | None:
    if ids is None or isinstance(ids, IdSet):
        return ids
    out = IdSet()
    listed = list(ids)
    for start in range(0, len(listed), 10_000):
        out.add(listed[start : start + 10_000])
    return out


def stale_metadata(store: VectorStore, lc: LogicalCollection, version: IndexVersion, model: ModelVersion) -> list[str]:
    """The query-side metadata keys (reindexer.encoders) that the version's collection lacks or misstates."""
    have = store.describe(version.physical_name).metadata
    want = model_metadata(model)
    return sorted(k for k, v in want.items() if have.get(k) != v and k != "reindex.model_path")


def require_verified(report: VerifyReport, what: str, repair: str) -> None:
    """Raise naming the commands that repair ``what``: an operator copies a hint, so it is whole."""
    if not report.ok:
        raise VerificationError(
            f"verification of {what} failed: " + "; ".join(report.problems()),
            hint=f"the shadow is left in place for inspection; {repair}",
        )
