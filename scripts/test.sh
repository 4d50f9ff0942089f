#!/usr/bin/env bash
# The test command (README, .ci/run): install into .venv when needed, then run pytest.
# With DISTALIGN_SOURCE set, the tests that need the upstream mirror must run: any
# such test that would be skipped fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
if [ -n "${DISTALIGN_SOURCE:-}" ]; then
  export DISTALIGN_SOURCE="$(cd "$DISTALIGN_SOURCE" && pwd)"
  export DISTALIGN_REQUIRE_MIRROR=1
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python -m pytest -q -p no:cacheprovider "$@"
