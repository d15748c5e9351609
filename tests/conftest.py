import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    "tests.plugins.stores",
    "tests.plugins.models",
    "tests.plugins.corpus",
    "tests.plugins.postgres",
    "tests.plugins.pgvector",
    "tests.plugins.trained",
    "tests.plugins.versions",
    "tests.plugins.liveness",
]
