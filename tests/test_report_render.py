"""The HTML report, drawn by a real browser: headless Chromium takes a screenshot and the test reads its pixels.

No model is needed: the evaluation runs on synthetic searchers. The PNG is
decoded with zlib, struct and numpy (no Pillow), enough to check that the page is not
blank and that the inline SVG charts were painted in their colours.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from reindexer.evaluation import Gate, evaluate
from reindexer.evaluation.report import to_html
from reindexer.evaluation.svg import BETTER, NEUTRAL, WORSE

# Debian's chromium; REINDEX_TEST_CHROMIUM names another Chromium or Chrome binary
CHROMIUM = os.environ.get("REINDEX_TEST_CHROMIUM", "/usr/bin/chromium")
WIDTH, HEIGHT = 1200, 1600
GATE = "ndcg@10 >= 0 and not significantly worse at p < 0.05"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


# -- a small evaluation on synthetic searchers ----------------------------------------
N_QUERIES = 40


def _ranking(qid: int, relevant_rank: int | None, related_rank: int | None, k: int) -> list[tuple[str, float]]:
    """k filler documents, with the answer and its related article put at the given 1-based ranks."""
    docs = [f"filler-{qid}-{i}" for i in range(k)]
    for rank, doc in ((relevant_rank, f"d{qid}"), (related_rank, f"d{qid}-related")):
        if rank is not None and rank <= k:
            docs[rank - 1] = doc
    return [(doc, 1.0 - i / 100) for i, doc in enumerate(docs)]


def _searcher(queries: dict[str, str], place):
    qid_of = {text: int(qid[1:]) for qid, text in queries.items()}

    def search(texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        return [_ranking(qid_of[t], *place(qid_of[t]), k) for t in texts]

    return search


@pytest.fixture(scope="module")
def result_and_gate():
    queries = {f"q{i:02d}": f"synthetic question number {i}" for i in range(N_QUERIES)}
    qrels = {f"q{i:02d}": {f"d{i}": 2, f"d{i}-related": 1} for i in range(N_QUERIES)}
    searchers = {
        # the answer somewhere in the top 7
        "v1": _searcher(queries, lambda i: (i % 7 + 1, 12)),
        # mostly first, related article close; every 8th query loses its answer to rank 9
        "v2": _searcher(queries, lambda i: (9 if i % 8 == 0 else 1, 2 if i % 3 else 15)),
        # worse on most queries: answer pushed down or out of the top 10
        "v3": _searcher(queries, lambda i: (None if i % 4 == 0 else i % 7 + 4, None)),
    }
    result = evaluate(searchers, queries, qrels, k=10, seed=0, resamples=2000)
    return result, Gate.parse(GATE)


# -- PNG, decoded with zlib, struct and numpy (no Pillow) ---------------------------------
def _unfilter_slow(kind: int, line: bytearray, previous: bytes, bpp: int) -> bytearray:
    """Average (3) and Paeth (4) filters depend on the byte just decoded: one byte at a time."""
    for x in range(len(line)):
        a = line[x - bpp] if x >= bpp else 0
        b = previous[x]
        if kind == 3:
            line[x] = (line[x] + ((a + b) >> 1)) & 0xFF
            continue
        c = previous[x - bpp] if x >= bpp else 0
        pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
        line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    return line


def read_png(path: Path) -> np.ndarray:
    """The pixels of an 8-bit RGB or RGBA, non-interlaced PNG, as a (height, width, 3) uint8 array."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    assert header is not None, "PNG without IHDR"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unsupported PNG layout {header}"
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, line = int(raw[y, 0]), raw[y, 1:]
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum per channel, modulo 256
            row = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(stride)
        elif kind == 2:  # Up
            row = line + previous
        elif kind in (3, 4):
            row = np.frombuffer(_unfilter_slow(kind, bytearray(line.tobytes()), previous.tobytes(), bpp), np.uint8)
        else:
            raise AssertionError(f"bad PNG filter {kind}")
        out[y] = row
        previous = out[y]
    return out.reshape(height, width, bpp)[:, :, :3]


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)


def solid_rows(pixels: np.ndarray, colour: str, min_run: int = 8, tol: int = 6) -> np.ndarray:
    """Rows (y) that hold a horizontal run of at least ``min_run`` pixels of ``colour``: filled shapes, not text."""
    match = (np.abs(pixels.astype(np.int16) - _rgb(colour)) <= tol).all(axis=2)
    runs = np.lib.stride_tricks.sliding_window_view(match, min_run, axis=1).all(axis=2)
    return np.flatnonzero(runs.any(axis=1))


# -- the test -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chromium() -> str:
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium to run this test "
                    "(or set REINDEX_TEST_CHROMIUM to a Chromium or Chrome binary)")
    return CHROMIUM


def screenshot(chromium: str, page: Path, out: Path, scratch: Path) -> None:
    profile = scratch / "profile"
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
           f"--window-size={WIDTH},{HEIGHT}", page.resolve().as_uri()]
    # HOME too: crash reports and caches stay in the test's folder
    env = {**os.environ, "HOME": str(scratch)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and out.exists(), f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"


@pytest.mark.slow
def test_html_report_renders_in_chromium(chromium, result_and_gate, tmp_path):
    result, gate = result_and_gate
    page = tmp_path / "report.html"
    page.write_text(to_html(result, gate, title="docs: retrieval evaluation"), encoding="utf-8")
    png = tmp_path / "report.png"
    screenshot(chromium, page, png, tmp_path)
    if os.environ.get("REINDEX_KEEP_SCREENSHOT"):  # to look at it: REINDEX_KEEP_SCREENSHOT=/some/folder
        shutil.copy(png, Path(os.environ["REINDEX_KEEP_SCREENSHOT"]) / "report.png")

    pixels = read_png(png)
    height, width = pixels.shape[:2]
    assert (width, height) == (WIDTH, HEIGHT)

    # not blank: a white page, many colours and a real spread of brightness
    flat = pixels.reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    background, share = tuple(int(v) for v in colours[counts.argmax()]), counts.max() / len(flat)
    variance = float(flat.mean(axis=1).var())
    print(f"\nscreenshot {width}x{height}: {len(colours)} colours, background {background} on {share:.0%}, "
          f"brightness variance {variance:.0f}")
    assert background == (255, 255, 255) and share < 0.97
    assert variance > 100 and len(colours) > 50

    # the charts were painted: solid bars and lines of the better (green), worse (red) and ties (grey) colours
    green, red, grey = (solid_rows(pixels, c) for c in (BETTER, WORSE, NEUTRAL))
    print(f"rows with solid chart colour: green {len(green)}, red {len(red)}, grey {len(grey)}")
    assert len(green) > 50 and len(red) > 5 and len(grey) > 5, (len(green), len(red), len(grey))
    # ...below the title, gate and mean table, inside the window; the two charts side by side
    assert 200 < min(green) < HEIGHT
    columns = np.flatnonzero((np.abs(pixels.astype(np.int16) - _rgb(BETTER)) <= 6).all(axis=2).any(axis=0))
    assert columns.max() - columns.min() > 700, "the interval plot and the histogram should sit side by side"
