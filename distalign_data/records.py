"""Run records: one (row, expression method, steering method, model) outcome each.

A run directory holds ``records.jsonl`` (append-only, one JSON object a line) and
``manifest.json``. New model runs and the import of the paper's released outputs
write the same records, so every later command reads both the same way.

>>> import tempfile
>>> store = RecordStore(tempfile.mkdtemp())
>>> rec = RunRecord(model="hf:tiny", dataset="nyt_books", row_id="nyt-1/Male",
...                 question_id="nyt-1", group_attribute="SEX", group="Male",
...                 method="verbalize", steering="persona", options=["a", "b"],
...                 distribution=[0.25, 0.75], parse_status="ok")
>>> store.append([rec])
1
>>> [r.distribution for r in store.records()]
[[0.25, 0.75]]
>>> rec.key in store.keys()
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from distalign_data.names import PARSE_STATUSES

RECORDS_FILE = "records.jsonl"
MANIFEST_FILE = "manifest.json"
# Fields that legitimately differ between two runs of the same work (wall-clock
# timings); comparisons of runs ignore them.
VOLATILE_FIELDS = frozenset({"elapsed_s"})
# Field names per record class: dataclasses.fields() per record cost seconds on a large run.
_FIELD_NAMES: dict[type, frozenset[str]] = {}


def record_key(model: str, dataset: str, row_id: str, method: str, steering: str) -> str:
    """Deterministic key of one record: the same work always gets the same key.

    >>> record_key("hf:tiny", "nyt_books", "nyt-1/Male", "sequence", "none")[:12]
    '96792dbd0faa'
    """
    payload = json.dumps([model, dataset, row_id, method, steering], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def row_identity(row: dict[str, Any]) -> dict[str, str]:
    """The record fields that identify a benchmark row (``RunRecord(**row_identity(row), ...)``)."""
    return {
        "dataset": row["dataset"],
        "row_id": row["id"],
        "question_id": row["question_id"],
        "group_attribute": row["group_attribute"],
        "group": row["group"],
    }


@dataclasses.dataclass
class RunRecord:
    """One model outcome for one benchmark row.

    ``options`` lists the row's options in the order the prompt presented them
    (letter i meant ``options[i]``); ``distribution`` is the parsed model
    distribution aligned with ``options``, or None when parsing failed.
    """

    model: str
    dataset: str
    row_id: str
    question_id: str
    group_attribute: str
    group: str
    method: str
    steering: str
    options: list[str]
    distribution: list[float] | None
    parse_status: str
    parse_reason: str = ""
    # Parser facts: raw_sum (verbalize), covered_mass (logprobs), invalid_letters (sequence)...
    parse_details: dict[str, Any] = dataclasses.field(default_factory=dict)
    raw_response: str = ""
    prompt: str | None = None
    prompt_sha256: str | None = None
    template_version: str | None = None
    backend: str = ""
    sampling: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int | None = None
    usage: dict[str, Any] = dataclasses.field(default_factory=dict)
    elapsed_s: float | None = None
    # Importer-only or backend-specific facts (e.g. the upstream's stored distribution).
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.parse_status not in PARSE_STATUSES:
            raise ValueError(f"record {self.row_id!r}: parse_status {self.parse_status!r} is not one of {PARSE_STATUSES}")
        if self.distribution is not None and len(self.distribution) != len(self.options):
            raise ValueError(
                f"record {self.row_id!r}: distribution has {len(self.distribution)} entries for {len(self.options)} options"
            )
        if self.distribution is None and self.parse_status != "failed":
            raise ValueError(f"record {self.row_id!r}: no distribution but parse_status {self.parse_status!r}")

    @property
    def key(self) -> str:
        return record_key(self.model, self.dataset, self.row_id, self.method, self.steering)

    def to_dict(self) -> dict[str, Any]:
        # Shallow: every field is JSON data already, and a deep copy of 80k records costs seconds.
        return {"key": self.key, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunRecord":
        fields = _FIELD_NAMES.get(cls) or _FIELD_NAMES.setdefault(cls, frozenset(f.name for f in dataclasses.fields(cls)))
        return cls(**{k: v for k, v in data.items() if k in fields})

    def comparable(self) -> dict[str, Any]:
        """The record without its volatile fields, for comparing two runs."""
        return {k: v for k, v in self.to_dict().items() if k not in VOLATILE_FIELDS}


class RecordStore:
    """Append-only store of run records in a run directory."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / RECORDS_FILE
        self.manifest_path = self.run_dir / MANIFEST_FILE
        # Keys of the complete lines read so far and where those lines end: each
        # line is parsed once, so appending stays linear in the number of records.
        self._known_keys: set[str] = set()
        self._complete_bytes = 0

    def _lines(self) -> Iterable[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open("r", encoding="utf-8") as handle:
            for line in handle:
                if not line.endswith("\n"):
                    # A crash mid-write leaves a partial last line; the work it
                    # described was not finished and will be redone.
                    return
                yield json.loads(line)

    def records(self) -> list[RunRecord]:
        """All records, first occurrence of each key, in the order written."""
        seen: set[str] = set()
        out = []
        for data in self._lines():
            if data["key"] in seen:
                continue
            seen.add(data["key"])
            out.append(RunRecord.from_dict(data))
        return out

    def keys(self) -> set[str]:
        return set(self._refresh_keys())

    def _refresh_keys(self) -> set[str]:
        """Read the complete lines written since the last call (by anyone) and return all keys."""
        if self.path.exists():
            with self.path.open("rb") as handle:
                handle.seek(self._complete_bytes)
                for line in handle:
                    if not line.endswith(b"\n"):
                        break
                    self._known_keys.add(json.loads(line)["key"])
                    self._complete_bytes += len(line)
        return self._known_keys

    def append(self, records: Iterable[RunRecord]) -> int:
        """Append records whose key is not stored yet; returns how many were written."""
        existing = self._refresh_keys()
        self._drop_partial_line()
        written = 0
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                if record.key in existing:
                    continue
                existing.add(record.key)
                handle.write(json.dumps(record.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")
                handle.flush()
                written += 1
            # One fsync per batch: an fsync per record made bulk imports (80k
            # records) take minutes; a crash still loses at most this batch's
            # unsynced tail, and a partial last line is dropped on read.
            os.fsync(handle.fileno())
        return written

    def _drop_partial_line(self) -> None:
        """Cut a crash's partial last line (everything after the last complete line)."""
        if self.path.exists() and self.path.stat().st_size > self._complete_bytes:
            os.truncate(self.path, self._complete_bytes)

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {}
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def update_manifest(self, updates: dict[str, Any]) -> dict[str, Any]:
        """Merge ``updates`` into the manifest (top-level keys; dicts merged one level) and save it atomically."""
        manifest = self.manifest()
        for key, value in updates.items():
            if isinstance(value, dict) and isinstance(manifest.get(key), dict):
                manifest[key] = {**manifest[key], **value}
            else:
                manifest[key] = value
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.manifest_path)
        return manifest
