"""Response cache: SQLite in WAL mode, keyed by everything that determines a response.

A key is the SHA-256 of the canonical JSON of its parts (backend, model, the
model's version or the server's URL, full request parameters, prompt, sample
index, seed), so a changed parameter can never return a stale answer. Never pass
a secret (an API key, a URL's credentials: :func:`public_url`) as a part.

>>> import tempfile, os
>>> cache = ResponseCache(os.path.join(tempfile.mkdtemp(), "cache.sqlite"))
>>> key = cache_key(backend="openai", model="m", request={"temperature": 1.0}, prompt="hi", sample_index=0, seed=1)
>>> cache.get(key) is None
True
>>> cache.put(key, {"text": "A A B"})
>>> cache.get(key)
{'text': 'A A B'}
>>> key == cache_key(seed=1, sample_index=0, prompt="hi", request={"temperature": 1.0}, model="m", backend="openai")
True
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import urllib.parse
from pathlib import Path
from typing import Any

CACHE_FILE = "cache.sqlite"


def public_url(url: str) -> str:
    """A URL as it may enter a key or a manifest: no user info (credentials), query or fragment, no trailing slash.

    >>> public_url("https://user:sk-secret@gateway.example:8443/v1/?key=sk-secret#x")
    'https://gateway.example:8443/v1'
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def cache_key(**parts: Any) -> str:
    """SHA-256 of the canonical JSON of ``parts`` (keys sorted, no whitespace)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """A key -> JSON response table shared by threads (and, through SQLite, processes)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, response TEXT NOT NULL)")
        self._conn.commit()

    def get(self, key: str) -> Any | None:
        with self._lock:
            row = self._conn.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, response: Any) -> None:
        """Store a response; the first one stored under a key wins."""
        text = json.dumps(response, sort_keys=True, ensure_ascii=False)
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO responses (key, response) VALUES (?, ?)", (key, text))
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
