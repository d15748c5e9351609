"""The ledger as a compact, sorted lookup table the workers share.

The workers decide which documents to embed, so each needs the ledger: a dict of
every id and hash would be ~100 bytes a document, copied into every worker. The
table is two sorted uint64 arrays (16 bytes a document: 1.6 GB at 10^8), put into
Ray's object store once and mapped, not copied, by every worker on a node.

Keys are 64-bit BLAKE2b digests of the doc id, values the first 64 bits of the
content hash. A key collision between two ledger ids only makes one of them look
changed (re-embedded: work, never a wrong skip); a document is skipped wrongly
only if its id's key is in the table *and* its new content hash agrees with the
stored one in 64 bits by chance (2^-64 a changed document).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np


def id_key(doc_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "little")


def hash_key(content_hash: str) -> int:
    return int(content_hash[:16], 16)


class LedgerTable:
    def __init__(self, keys: np.ndarray, values: np.ndarray):
        self.keys, self.values = keys, values

    @classmethod
    def from_ledger(cls, ledger: Mapping[str, str]) -> LedgerTable:
        keys = np.fromiter((id_key(d) for d in ledger), dtype=np.uint64, count=len(ledger))
        values = np.fromiter((hash_key(h) for h in ledger.values()), dtype=np.uint64, count=len(ledger))
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], values[order])

    def __len__(self) -> int:
        return len(self.keys)

    def unchanged(self, doc_ids: Iterable[str], hashes: Iterable[str]) -> np.ndarray:
        """For each document, True when the ledger holds its id with the same content hash."""
        k = np.fromiter((id_key(d) for d in doc_ids), dtype=np.uint64)
        v = np.fromiter((hash_key(h) for h in hashes), dtype=np.uint64)
        if not len(self.keys) or not len(k):
            return np.zeros(len(k), dtype=bool)
        at = np.minimum(np.searchsorted(self.keys, k), len(self.keys) - 1)
        return (self.keys[at] == k) & (self.values[at] == v)
