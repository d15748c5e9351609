"""A short contrastive fine-tune: (query, positive) pairs, in-batch negatives.

Used by ``reindex demo`` to make a second model version for real, and usable on
its own. It wraps sentence-transformers' ``SentenceTransformerTrainer`` with
``MultipleNegativesRankingLoss`` (every other positive in the batch is a negative
for a query, so batches must not repeat a text: the NO_DUPLICATES sampler), and
saves an ordinary sentence-transformers folder that ``SentenceTransformer(path)``
loads.

Offline and quiet: no hub access, no reporting integrations, no progress bars or
log lines on stdout (the CLI's ``--json`` owns stdout); progress goes to the
``reindexer.finetune`` logger, which writes to stderr when configured.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from reindexer.extras import require_train

log = logging.getLogger(__name__)

__all__ = ["finetune"]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the progress bars and info logs of transformers, datasets and sentence-transformers."""
    saved_env = {k: os.environ.get(k) for k in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "TOKENIZERS_PARALLELISM")}
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    restore: list = []
    try:
        try:
            import transformers.utils.logging as tlog

            prev_verbosity = tlog.get_verbosity()
            bars_were_on = tlog.is_progress_bar_enabled()
            tlog.set_verbosity_error()
            tlog.disable_progress_bar()
            restore.append(lambda: tlog.set_verbosity(prev_verbosity))
            if bars_were_on:
                restore.append(tlog.enable_progress_bar)
        except Exception:  # noqa: BLE001  # pragma: no cover - older transformers
            pass
        try:
            import datasets.utils.logging as dlog

            bars_were_on = dlog.is_progress_bar_enabled()
            dlog.disable_progress_bar()
            if bars_were_on:
                restore.append(dlog.enable_progress_bar)
        except Exception:  # noqa: BLE001  # pragma: no cover - quieting bars is best effort
            pass
        try:  # the model card's "Computing widget examples" bar is a plain tqdm
            import functools

            import sentence_transformers.base.model_card as card
            from tqdm.autonotebook import tqdm

            card_tqdm = card.tqdm
            card.tqdm = functools.partial(tqdm, disable=True)
            restore.append(lambda: setattr(card, "tqdm", card_tqdm))
        except Exception:  # noqa: BLE001  # pragma: no cover - other sentence-transformers layouts
            pass
        st_logger = logging.getLogger("sentence_transformers")
        prev_level = st_logger.level
        st_logger.setLevel(logging.WARNING)
        restore.append(lambda: st_logger.setLevel(prev_level))
        yield
    finally:
        for undo in reversed(restore):
            with contextlib.suppress(Exception):
                undo()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _dedupe(pairs: Iterable[Sequence[str]]) -> tuple[list[str], list[str]]:
    anchors: list[str] = []
    positives: list[str] = []
    seen: set[tuple[str, str]] = set()
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"a training pair is (query, positive text), got {len(pair)} items")
        q, p = str(pair[0]), str(pair[1])
        if not q.strip() or not p.strip():
            raise ValueError("training pairs must not have empty texts")
        if (q, p) in seen:
            continue
        seen.add((q, p))
        anchors.append(q)
        positives.append(p)
    return anchors, positives


def finetune(
    base_model_path: str | os.PathLike[str],
    pairs: Iterable[Sequence[str]],
    output_dir: str | os.PathLike[str],
    epochs: int = 1,
    batch_size: int = 32,
    seed: int = 0,
    max_steps: int | None = None,
    device: str | None = None,
    learning_rate: float = 5e-5,
    warmup_ratio: float = 0.1,
) -> Path:
    """Fine-tune the sentence-transformers model at ``base_model_path`` on (query, positive) pairs.

    Loss: MultipleNegativesRankingLoss (in-batch negatives), batches drawn with
    the NO_DUPLICATES sampler. ``max_steps`` (when given) overrides ``epochs``.
    ``device`` defaults to "cuda" when available, else "cpu". The
    result is saved with ``model.save(output_dir)`` and the folder is returned.
    Deterministic given ``seed`` as far as torch allows on the chosen device.
    Needs the ``train`` extra (``pip install "reindexer[train]"``).
    """
    require_train("fine-tuning")
    anchors, positives = _dedupe(pairs)
    if len(anchors) < 2:
        raise ValueError("in-batch negatives need at least 2 distinct training pairs")
    if batch_size < 2:
        raise ValueError("batch_size must be at least 2 (the other pairs of a batch are the negatives)")
    output_dir = Path(output_dir)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()

    with _quiet():
        from datasets import Dataset
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
        from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
        from sentence_transformers.sentence_transformer.training_args import (
            BatchSamplers,
            SentenceTransformerTrainingArguments,
        )
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        _seed_everything(seed)
        model = SentenceTransformer(str(base_model_path), device=device, local_files_only=True)
        dataset = Dataset.from_dict({"anchor": anchors, "positive": positives})
        loss = MultipleNegativesRankingLoss(model)

        per_device = min(batch_size, len(anchors))
        total_steps = max_steps if max_steps is not None else epochs * math.ceil(len(anchors) / per_device)
        warmup_steps = int(round(warmup_ratio * total_steps))
        with tempfile.TemporaryDirectory(prefix="reindex-finetune-") as scratch:
            args = SentenceTransformerTrainingArguments(
                output_dir=scratch,  # checkpoints are off; the trainer still wants a folder
                num_train_epochs=epochs,
                max_steps=max_steps if max_steps is not None else -1,
                per_device_train_batch_size=per_device,
                learning_rate=learning_rate,
                warmup_steps=warmup_steps,
                batch_sampler=BatchSamplers.NO_DUPLICATES,
                seed=seed,
                data_seed=seed,
                save_strategy="no",
                eval_strategy="no",
                logging_strategy="no",
                report_to="none",
                push_to_hub=False,
                disable_tqdm=True,
                dataloader_num_workers=0,
                use_cpu=device == "cpu",
            )
            trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
            # PrinterCallback print()s the metrics dict on stdout; ProgressCallback draws tqdm bars.
            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
            result = trainer.train()

        output_dir.mkdir(parents=True, exist_ok=True)
        model.save(str(output_dir))

    log.info(
        "fine-tuned %s on %d pairs: %d steps, loss %.4f, %.1f s -> %s",
        base_model_path,
        len(anchors),
        result.global_step,
        result.training_loss,
        time.perf_counter() - started,
        output_dir,
    )
    return output_dir
