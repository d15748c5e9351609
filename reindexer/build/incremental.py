"""The incremental side of a version: where it syncs from, how far a source was read, its lexical vectors again.

A version built by an apply keeps being synced from the source its plan names
(``default_source``); a SQL source with an updated field is read only past the stored
watermark (``get_watermark``, ``set_watermark``). Used by the sync and verify verbs
(reindexer.commands.syncing), by an apply's build (reindexer.build.shadow) and by the
catch-up before every alias swap (reindexer.build.catchup). The verbs themselves are
not here, and neither is the pass that embeds (reindexer.build.steps.sync_into).
"""

from __future__ import annotations

from typing import Any

from reindexer.build.steps import version_text_field
from reindexer.sources.base import extract_text
from reindexer.sources.spec import SourceSpec, open_source
from reindexer.state import IndexVersion, LogicalCollection
from reindexer.workspace import Workspace


def default_source(ws: Workspace, lc: LogicalCollection, version: IndexVersion) -> SourceSpec:
    """The source the version was built from (its plan's), else the live payload."""
    if version.plan_id:
        record = ws.state.get_plan(version.plan_id)
        if record is not None:
            return SourceSpec.from_dict(record.body["source"])
    return SourceSpec(kind="payload", text_field=lc.text_field)


def _watermark_key(ws: Workspace, collection: str, spec: SourceSpec) -> str:
    return f"watermark:{ws.store_url}#{collection}#{spec.kind}:{spec.location}"


def get_watermark(ws: Workspace, collection: str, spec: SourceSpec) -> Any:
    value = ws.state.get_meta(_watermark_key(ws, collection, spec))
    return None if value is None else number_or_text(value)


def number_or_text(value: str) -> Any:
    """A stored watermark, or a --since value, as the number it spells (int, then float), else the text."""
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def set_watermark(ws: Workspace, collection: str, spec: SourceSpec, value: Any) -> None:
    ws.state.set_meta({_watermark_key(ws, collection, spec): str(value)})


def rewrite_lexical(ws: Workspace, lc: LogicalCollection, version: IndexVersion) -> int:
    """Write every point's BM25 vector again from the text it holds (no embedding); the number written."""
    from reindexer.build.stream import lexical_encoder

    lexical = lexical_encoder(version)
    if lexical is None:
        return 0
    text_field, written = version_text_field(ws, lc, version), 0
    for page in ws.store.scroll(version.physical_name, batch_size=ws.batch_size):
        texts = [extract_text(p.payload, text_field) for p in page]
        points = [p for p, text in zip(page, texts, strict=True) if text is not None]
        sparse = lexical.documents([text for text in texts if text is not None])
        for point, vector in zip(points, sparse, strict=True):
            point.other_vectors = {lexical.stored.vector: vector}
        ws.store.set_other_vectors(version.physical_name, points)
        written += len(points)
    return written


def open_sync_source(ws: Workspace, spec: SourceSpec, live: IndexVersion | None):
    """The source ``spec`` names, opened to sync (or verify) a version; a payload source reads ``live``."""
    if spec.kind == "payload":
        # The live collection is the source; catch-up passes re-read it as applications write to it.
        return open_source(spec, store=ws.store, collection=live.physical_name if live else None)
    return open_source(spec)
