import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# As the CLI does (reindexer/cli.py): a worker that has opened a Milvus channel and then starts pgserver's
# pg_ctl (fork, not vfork: it runs as another user) lost the child to a SIGSEGV in gRPC's fork handler.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
# A pytest-xdist worker (make test runs two) finds COLUMNS=80 and LINES=24 in its environment, which the
# single-process suite never had: rich would then draw the CLI's tables 80 columns wide, where output no
# terminal reads is drawn uncut (reindexer.cli_context.OutputConsole). Tests that want a width set one.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)

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
