"""The per-batch work Ray runs on its workers: parse and filter, embed, write.

Each stage takes and returns a dict of numpy columns. Rows flow on whether or not
they need embedding, so the driver sees every id (deletions, verification and the
duplicate check need them); an unchanged row carries only its id and hash.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from reindexer.raydata.reads import RECORD, unpickle
from reindexer.sources.base import RecordSource
from reindexer.sources.spec import SourceSpec

if TYPE_CHECKING:
    from reindexer.embedding import Embedder

DOC_ID, HASH, TODO, TEXT, PAYLOAD, VECTOR = "doc_id", "hash", "todo", "text", "payload", "vector"


class _Parser(RecordSource):
    """The local sources' row handling (id, text, payload, hash), applied to records read elsewhere."""

    def __init__(self, spec: SourceSpec, description: str):
        super().__init__(text_field=spec.text_field, id_field=spec.id_field, updated_field=spec.updated_field)
        self.convert_payload = spec.kind != "payload"
        self.unit = "points" if spec.kind == "payload" else "rows"
        self.description = description

    def _records(self):  # pragma: no cover - records come from the read stage
        raise NotImplementedError


def parse_and_filter(batch: dict[str, np.ndarray], spec: SourceSpec, description: str, ledger_ref: Any) -> dict:
    """Documents from raw records, flagged ``todo`` unless the ledger holds them with the same hash."""
    import ray

    from reindexer.errors import UsageError
    from reindexer.sources.base import TEXT_FIELD_HINT, extract_text

    parser = _Parser(spec, description)
    ids, hashes, texts, payloads = [], [], [], []
    for where, doc_id, record in unpickle(batch[RECORD]):
        doc_id = parser.read_id(where, doc_id, record)  # duplicates across partitions: the driver's check
        text = extract_text(record, parser.text_field)
        if text is None:
            raise UsageError(
                f"{description}: {where} (id {doc_id!r}) has no text under {parser.text_field!r}", hint=TEXT_FIELD_HINT
            )
        doc = parser._document(where, doc_id, text, record)
        ids.append(doc.doc_id)
        hashes.append(doc.content_hash)
        texts.append(doc.text)
        payloads.append(json.dumps(doc.payload, ensure_ascii=False))
    table = ray.get(ledger_ref) if ledger_ref is not None else None
    unchanged = table.unchanged(ids, hashes) if table is not None else np.zeros(len(ids), dtype=bool)
    return {
        DOC_ID: np.array(ids, dtype=object),
        HASH: np.array(hashes, dtype=object),
        TODO: ~unchanged,
        TEXT: np.array([t if not u else "" for t, u in zip(texts, unchanged, strict=True)], dtype=object),
        PAYLOAD: np.array([p if not u else "" for p, u in zip(payloads, unchanged, strict=True)], dtype=object),
    }


class EmbedReplica:
    """One model replica: loads the registered version from its recorded path, offline, once per actor.

    The weights load on the first batch that needs embedding, so a catch-up pass that finds
    nothing changed never pays for them.
    """

    def __init__(
        self,
        path: str,
        settings: dict[str, Any],
        fingerprint: str,
        dim: int,
        device: str | None,
        batch_size: int | None,
    ):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.path, self.settings, self.fingerprint = path, settings, fingerprint
        self.dim, self.device, self.batch_size = dim, device, batch_size
        self.embedder: Embedder | None = None

    def _load(self):
        from reindexer.embedding import Embedder
        from reindexer.errors import UsageError
        from reindexer.model_identity import ModelSettings, fingerprint_matches

        settings = ModelSettings.from_dict(self.settings)
        if not os.path.isdir(self.path) or not fingerprint_matches(self.path, settings, self.fingerprint):
            # A worker whose copy of the model differs would write other vectors under the same version.
            raise UsageError(
                f"the model at {self.path} on this Ray worker is not the registered version {self.fingerprint[:12]}",
                hint="give every worker the same model folder (a shared volume or the image)",
            )
        return Embedder(self.path, settings, device=self.device, batch_size=self.batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        todo = batch[TODO].astype(bool)
        vectors = np.zeros((len(todo), self.dim), dtype=np.float32)
        if todo.any():
            if self.embedder is None:
                self.embedder = self._load()
            vectors[todo] = self.embedder.embed_documents([str(t) for t in batch[TEXT][todo]])
        out = {k: batch[k] for k in (DOC_ID, HASH, TODO, PAYLOAD)}
        out[VECTOR] = vectors
        return out


def points(batch: dict[str, np.ndarray], model_short: str) -> list:
    """The store points of a batch's ``todo`` rows, built as the local executor builds them."""
    from reindexer.build.stream import store_points
    from reindexer.sources.base import Document

    todo = batch[TODO].astype(bool)
    docs = [Document(str(d), "", json.loads(p)) for d, p in zip(batch[DOC_ID][todo], batch[PAYLOAD][todo], strict=True)]
    return store_points(docs, batch[VECTOR][todo], model_short)


class StoreWriter:
    """Writes from a Ray worker straight into a server store; only ids and hashes go back to the driver."""

    def __init__(self, store_url: str, base_dir: str, physical: str, model_short: str):
        from pathlib import Path

        from reindexer.adapters import open_store

        self.store = open_store(store_url, Path(base_dir))
        self.physical, self.model_short = physical, model_short

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = points(batch, self.model_short)
        if rows:
            self.store.upsert(self.physical, rows)
        return {k: batch[k] for k in (DOC_ID, HASH, TODO)}
