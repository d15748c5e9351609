#!/usr/bin/env bash
# Create .venv and install reindexer with its test extras. Idempotent: re-runs only
# when pyproject.toml changed. torch goes in first, pinned, because that version
# has a CPU wheel on these machines while a bare `torch` pulls gigabytes of CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.setup-stamp"
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | sed "/^WARNING: Location/d"
"$VENV/bin/python" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}" 2>&1 | sed "/^WARNING: Location/d"
"$VENV/bin/python" -m pip install -q -e ".[test]" 2>&1 | sed "/^WARNING: Location/d"
# LlamaIndex's Milvus store for tests/integrations: 1.2.0 pins pymilvus<3, which langchain-milvus>=0.4
# (pymilvus>=3) excludes, so it cannot sit in the test extra. Its only other dependency,
# llama-index-core, is there; without its deps it runs on pymilvus 3 (the tests prove it), and
# `pip check` then reports that pin alone.
"$VENV/bin/python" -m pip install -q --no-deps "llama-index-vector-stores-milvus==1.2.0" 2>&1 | sed "/^WARNING: Location/d"
# langchain-postgres for tests/integrations/test_langchain_postgres.py: 0.0.19 (its only release) pins
# pgvector<0.4, while the PostgreSQL backend needs pgvector 0.5 (pgvector.Vector); its
# PGVectorStore does not import pgvector, so it goes in without its deps, beside the ones it uses.
"$VENV/bin/python" -m pip install -q "asyncpg>=0.29" "psycopg-pool>=3.2" 2>&1 | sed "/^WARNING: Location/d"
"$VENV/bin/python" -m pip install -q --no-deps "langchain-postgres==0.0.19" 2>&1 | sed "/^WARNING: Location/d"
# LlamaIndex's PGVectorStore for tests/integrations/test_llamaindex_postgres.py: 0.9.0 pins
# sqlalchemy<2.1, below the SQLAlchemy the test extra resolves to (2.1); it runs on 2.1 (the test
# proves it), so it goes in without its deps, beside the ones nothing else brings: psycopg2 (imported
# on load) and greenlet (sqlalchemy[asyncio]: it makes an async engine too). asyncpg and pgvector are
# above; `pip check` then reports the sqlalchemy pin alone.
"$VENV/bin/python" -m pip install -q "psycopg2-binary>=2.9.9,<3" "greenlet>=1" 2>&1 | sed "/^WARNING: Location/d"
"$VENV/bin/python" -m pip install -q --no-deps "llama-index-vector-stores-postgres==0.9.0" 2>&1 | sed "/^WARNING: Location/d"
"$VENV/bin/python" -c "import torch, sentence_transformers, qdrant_client, pymilvus, sqlmodel, reindexer.adapters, llama_index.vector_stores.milvus, langchain_postgres, llama_index.vector_stores.postgres, pgvector.psycopg" 
echo "$want" > "$STAMP"
