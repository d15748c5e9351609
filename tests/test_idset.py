"""IdSet: the same answers in memory and spilled to disk, and a source's repeated ids found across chunks."""

from __future__ import annotations

import json

import pytest

from reindexer.errors import UsageError
from reindexer.idset import IdSet
from reindexer.sources.jsonl import JsonlSource


@pytest.mark.parametrize("spill_at", [10**9, 50], ids=["memory", "spilled"])
def test_repeats_missing_and_pages_agree_in_memory_and_on_disk(spill_at):
    with IdSet(spill_at=spill_at) as ids:
        assert ids.add_new([str(i) for i in range(2000)]) == set()
        assert ids.spilled == (spill_at == 50)
        assert ids.add_new(["1999", "2000", "7", "2000"]) == {"1999", "7", "2000"}
        assert len(ids) == 2001
        assert ids.missing(["0", "2000", "2001", "x"]) == ["2001", "x"]
        assert ids.present(["5", "nope"]) == {"5"}
        pages = list(ids.pages(300))
        assert [len(p) for p in pages] == [300] * 6 + [201]
        assert [i for p in pages for i in p] == sorted(str(i) for i in range(2001))


def test_a_set_spills_once_it_passes_its_bound_and_keeps_every_id():
    with IdSet(spill_at=100) as ids:
        ids.add([f"a{i}" for i in range(100)])
        assert not ids.spilled
        ids.add(["b"])
        assert ids.spilled and len(ids) == 101 and ids.missing(["a0", "a99", "b", "c"]) == ["c"]


def test_a_jsonl_source_finds_a_repeated_id_in_another_chunk_after_yielding_what_came_before(tmp_path, monkeypatch):
    import reindexer.idset as idset
    import reindexer.sources.base as base

    monkeypatch.setattr(base, "ID_CHUNK", 7)
    monkeypatch.setattr(idset, "SPILL_AT", 5)  # the source's own IdSet goes to disk early
    path = tmp_path / "c.jsonl"
    rows = [{"id": f"d{i}", "text": f"t {i}"} for i in range(30)] + [{"id": "d3", "text": "again"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = []
    with pytest.raises(UsageError, match="duplicate id 'd3' at line 31"):
        for doc in JsonlSource(str(path)):
            got.append(doc.doc_id)
    assert got == [f"d{i}" for i in range(30)]


def test_a_spilled_set_keeps_any_text_id_exactly():
    odd = ["é", "日本", "😀", "a b", 'quote"d', "back\\slash", "null\u0000byte", "[1]", "Z", "z"]
    with IdSet(spill_at=3) as ids:
        ids.add(odd[:5])
        assert ids.spilled
        assert ids.add_new(odd) == set(odd[:5])
        assert ids.present(odd + ["other"]) == set(odd)
        assert list(ids) == sorted(odd) and len(ids) == len(odd)


def test_a_plain_source_scans_its_ids_into_a_spilling_set(monkeypatch):
    import reindexer.idset
    from reindexer.sources.base import Document, Source

    class Counting(Source):
        description = "counting"

        def __iter__(self):
            for i in range(2500):
                yield Document(f"d{i:04d}", f"text {i}", updated_at=i)

    monkeypatch.setattr(reindexer.idset, "SPILL_AT", 100)
    with Counting().scan() as scanned:
        assert scanned.count == 2500 and scanned.ids.spilled
        assert scanned.max_updated_at == 2499 and list(scanned.ids)[:2] == ["d0000", "d0001"]
