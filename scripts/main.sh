#!/usr/bin/env bash
# The main job on its embedded default: install, build the three datasets from the
# pinned upstream source, import the paper's released outputs and reproduce its
# tables under both scoring protocols. The source is $DISTALIGN_SOURCE when set,
# otherwise the pinned upstream files are downloaded and verified.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
out=${DISTALIGN_OUT:-out}
mkdir -p "$out"
time distalign build --out "$out/datasets"
time distalign reproduce --protocol both --json "$out/reproduce.json"
