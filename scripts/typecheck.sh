#!/usr/bin/env bash
# mypy over reindexer/ and adapters/ as the installed package sees them: adapters/ is
# installed as reindexer.adapters (pyproject's package-dir), which mypy cannot map by
# itself, so it checks a tree of symlinks in build/typecheck with that layout. Paths in
# its messages read reindexer/adapters/X.py for adapters/X.py. Settings: [tool.mypy].
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tree=build/typecheck
rm -rf "$tree/reindexer"
mkdir -p "$tree/reindexer"
for entry in reindexer/*; do
  ln -s "$root/$entry" "$tree/reindexer/"
done
ln -s "$root/adapters" "$tree/reindexer/adapters"
cd "$tree"
exec "$root/.venv/bin/python" -m mypy --config-file "$root/pyproject.toml" -p reindexer "$@"
