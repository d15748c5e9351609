"""Optional features and the pip extra that installs each.

The core install serves, plans, applies and evaluates without the training stack;
fine-tuning (the demo's v2, ``reindexer.finetune``) and the trainer callback need
``datasets`` and ``accelerate``, which only the ``train`` extra installs. Each entry
point checks before it does anything, so a missing extra is one clear message and
nothing half-done.
"""

from __future__ import annotations

import importlib

from reindexer.errors import UsageError

TRAIN_MODULES = ("datasets", "accelerate")
TRAIN_INSTALL = 'pip install "reindexer[train]"'


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def require_train(feature: str) -> None:
    """Raise a UsageError naming the extra when ``feature`` cannot train here."""
    missing = missing_modules(TRAIN_MODULES)
    if missing:
        raise UsageError(
            f"{feature} needs {' and '.join(missing)}, which the core install leaves out",
            hint=f"{TRAIN_INSTALL}, or make demo, which installs it",
        )


def require(module: str, extra: str, feature: str):
    """Import ``module``, or raise a UsageError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(
            f"{feature} needs {module}, which the core install leaves out",
            hint=f'pip install "reindexer[{extra}]"',
        ) from None
