#!/usr/bin/env bash
# Create .venv and install distalign with every extra. torch is pinned to the CPU
# wheel this machine carries; an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
stamp=.venv/.distalign-installed
want=$(sha256sum setup.cfg pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q "torch==2.13.0" -e ".[all,embeddings]"
  echo "$want" > "$stamp"
fi
