"""Child process of the API crash tests: one ``base.run`` of an API backend over rows from a JSON file.

    python tests/api_run_child.py SPEC ROWS_JSON RUN_DIR METHODS CONCURRENCY

``API_CHILD_APPEND_DELAY`` (seconds) delays every record write, which widens the
window in which a response is cached but its record not yet written, so a test
can kill the run inside it.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    from distalign_data.model_runners import base
    from distalign_data.records import RecordStore

    delay = float(os.environ.get("API_CHILD_APPEND_DELAY") or 0)
    if delay:
        append = RecordStore.append

        def slow_append(self, records):
            time.sleep(delay)
            return append(self, records)

        RecordStore.append = slow_append
    spec, rows_path, run_dir, methods, concurrency = argv
    rows = json.loads(open(rows_path, encoding="utf-8").read())
    backend = base.get_backend(spec, concurrency=int(concurrency), timeout=5, api_key_env="DISTALIGN_TEST_KEY")
    try:
        base.run(backend, rows, methods=methods.split(","), steerings=["persona"], run_dir=run_dir, seed=0, progress=False)
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
