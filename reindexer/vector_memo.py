"""Vectors a loaded model made in this process, handed to the next step that needs the same texts.

Two hand-offs, within one process (``commands.plan`` then ``commands.apply``: a deploy hook, a
benchmark, a library caller), each vector given out once, both bounded in bytes:

- **the plan's sample -> the build**: a plan without history embeds a sample of the corpus to
  time it (reindexer.estimate). The build embeds those documents again: on 1,000 long texts the
  sample was 7% of the build's encode work (issue 26). The estimate keeps the sample's vectors
  (``ModelMemos.sample``) and the build's pipeline takes them instead of encoding those texts twice.
- **the build -> its verification**: verification compares a few stored vectors with the model's
  vectors of their stored texts (reindexer.build.verify). The pipeline keeps the first vectors it
  makes for a version (``ModelMemos.built``, until the bound is reached: no churn past it), and
  verification of that version takes those of the points it sampled; it embeds the others.

A vector kept from the plan's sample carries the encode time it cost there. The build that takes it
notes that time (``note_reused``), and the rate the build records for later plans adds it back
(reindexer.estimate.record_run): the rate is that of a build which encoded every document, the
build later plans, with history, will run.

A vector is found by a 128-bit BLAKE2b digest of its text (texts are not held), per loaded model:
reindexer.embedding loads a folder once per settings, device and precision, and the memos live on
that object, so a vector is only ever reused for the same text through the same weights. Within a
batch, sentence-transformers pads a text beside others, which moves its vector by float rounding:
the spread the build's own batches have anyway. Never served from here: a timing (the estimate
encodes every text it times) and anything in another process (``reindex verify`` re-embeds).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: bytes of vectors each memo of a loaded model may hold: 10,000 vectors of 384 dimensions
MEMO_BYTES = 16 * 2**20
#: what an entry costs beside its vector's bytes (digest, array header, dict slot)
ENTRY_OVERHEAD = 200


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclass
class Taken:
    """Vectors given out by a memo, by position in the texts asked for, and the encode time they cost."""

    rows: dict[int, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


class VectorMemo:
    """Vectors by text digest, each given out once; ``keep`` stops at ``max_bytes`` (the first ones stay)."""

    def __init__(self, max_bytes: int = MEMO_BYTES):
        self.max_bytes = max_bytes
        self.owner: Hashable | None = None  # what the vectors were made for (a version), where that matters
        self._rows: dict[bytes, tuple[np.ndarray, float]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def keep(self, texts: Sequence[str], vectors: np.ndarray, seconds: float = 0.0) -> int:
        """Keep one vector per text while the bound allows, ``seconds`` (the encode time of all of them)
        shared evenly; returns how many were kept."""
        kept = 0
        each = seconds / max(len(texts), 1)
        with self._lock:
            for text, vector in zip(texts, vectors, strict=True):
                size = vector.nbytes + ENTRY_OVERHEAD
                if self._bytes + size > self.max_bytes:
                    break
                key = text_key(text)
                if key not in self._rows:
                    self._rows[key] = (np.array(vector, dtype=np.float32), each)  # a copy: the batch is not held
                    self._bytes += size
                    kept += 1
        return kept

    def take(self, texts: Sequence[str]) -> Taken:
        """The kept vectors of ``texts``, removed as they are given (a repeated text gets one once)."""
        taken = Taken()
        if not self._rows:
            return taken
        with self._lock:
            for i, text in enumerate(texts):
                row = self._rows.pop(text_key(text), None)
                if row is not None:
                    taken.rows[i], spent = row
                    taken.seconds += spent
                    self._bytes -= row[0].nbytes + ENTRY_OVERHEAD
        return taken

    def clear(self, owner: Hashable | None = None) -> None:
        with self._lock:
            self._rows.clear()
            self._bytes = 0
            self.owner = owner


@dataclass
class ModelMemos:
    """One loaded model's two hand-offs (see the module)."""

    sample: VectorMemo = field(default_factory=VectorMemo)
    built: VectorMemo = field(default_factory=VectorMemo)


_CREATE_LOCK = threading.Lock()


def memos_of(embedder: Any) -> ModelMemos | None:
    """The memos of the model ``embedder`` runs (reindexer.embedding.Embedder), None for anything else."""
    model = getattr(embedder, "model", None)
    held = getattr(model, "__dict__", None)
    if held is None:
        return None
    with _CREATE_LOCK:
        memos = held.get("_reindex_memos")
        if memos is None:
            memos = held["_reindex_memos"] = ModelMemos()
    return memos


def rate_key(fingerprint: str, device: str, store_url: str) -> tuple[str, str, str]:
    """What a build's rate is recorded under (reindexer.estimate.record_run): model, device and store."""
    return (fingerprint, device, store_url)


_REUSED: dict[Hashable, float] = {}
_REUSED_LOCK = threading.Lock()


def note_reused(key: Hashable, seconds: float) -> None:
    """A build took vectors the plan's sample had encoded in ``seconds``; ``key`` names what records its rate."""
    with _REUSED_LOCK:
        _REUSED[key] = _REUSED.get(key, 0.0) + seconds


def take_reused(key: Hashable) -> float:
    """The encode seconds builds under ``key`` took from plans' samples since last asked (then forgotten)."""
    with _REUSED_LOCK:
        return _REUSED.pop(key, 0.0)


def encode_reusing(embedder: Any, memo: VectorMemo | None, texts: Sequence[str]) -> tuple[np.ndarray, int]:
    """``embedder.embed_documents(texts)``, taking from ``memo`` what it holds: the vectors and how many came
    from it. The rest is encoded in one call, in the given order."""
    taken = memo.take(texts).rows if memo is not None else {}
    if not taken:
        return embedder.embed_documents(list(texts)), 0
    rest = [i for i in range(len(texts)) if i not in taken]
    dim = next(iter(taken.values())).shape[0]
    out = np.empty((len(texts), dim), dtype=np.float32)
    for i, row in taken.items():
        out[i] = row
    if rest:
        out[rest] = embedder.embed_documents([texts[i] for i in rest])
    return out, len(taken)
