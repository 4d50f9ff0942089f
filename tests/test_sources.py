"""Pinned upstream sources: resolution order, verification, download, pseudonymisation."""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import json
import shutil
import socket
import threading
from pathlib import Path

import pytest

from distalign_data import sources
from distalign_data.benchmarks import load_rows
from distalign_data.sources import (
    BASE_URL_VARIABLE,
    CACHE_VARIABLE,
    SOURCE_VARIABLE,
    UpstreamIntegrityError,
    UpstreamSourceError,
    resolve_source,
)

from tests.upstream_helpers import WORKERS, original_annotation_files, write_upstream

RATINGS = "nytimes/individual_annotations/NYTIMES_proportions_ID.json"
DEMOGRAPHICS = "nytimes/individual_annotations/nytimes_annotator_demographics.csv"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.delenv(BASE_URL_VARIABLE, raising=False)


@pytest.fixture()
def upstream(tmp_path):
    root = tmp_path / "upstream"
    return root, write_upstream(root)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Server:
    """A loopback HTTP server over a directory that counts the requests it answers."""

    def __init__(self, directory: Path):
        requests = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(directory), **kwargs)

            def log_message(self, *args):
                requests.append(self.path)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_pseudonym_is_the_mirrors_rule():
    expected = "anon-" + hashlib.sha256(b"distalign:A1B2C3").hexdigest()[:12]
    assert sources.pseudonym("A1B2C3") == expected
    assert sources._pseudonymise_value(expected) == expected  # already a pseudonym
    assert sources._pseudonymise_value("n/a") == "n/a"


def test_explicit_source_then_environment_then_download(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    monkeypatch.setenv(SOURCE_VARIABLE, str(first))
    assert resolve_source(second).root == second.resolve()
    assert resolve_source().root == first.resolve()
    monkeypatch.delenv(SOURCE_VARIABLE)
    monkeypatch.setenv(BASE_URL_VARIABLE, "http://127.0.0.1:9/mirror")
    downloaded = resolve_source()
    assert downloaded.root is None and downloaded.base_url == "http://127.0.0.1:9/mirror/"
    with pytest.raises(UpstreamSourceError, match="not a directory"):
        resolve_source(tmp_path / "missing")


def test_files_verify_against_the_manifest(upstream):
    root, manifest = upstream
    source = resolve_source(root, manifest=manifest)
    assert source.read_json("nytimes/data.json") == json.loads((root / "nytimes/data.json").read_text())
    assert "Global_Values/data/data.json" in source.files("Global_Values/")
    with pytest.raises(ValueError, match="not a file of the upstream manifest"):
        source.read_bytes("nytimes/extra.json")


@pytest.mark.parametrize("same_size", [True, False])
def test_tampered_file_is_named(upstream, same_size):
    root, manifest = upstream
    target = root / "nytimes/data.json"
    data = target.read_bytes()
    target.write_bytes(data.replace(b"Summary 1.", b"Summary 9.") if same_size else data + b" ")
    with pytest.raises(UpstreamIntegrityError, match="nytimes/data.json"):
        resolve_source(root, manifest=manifest).read_bytes("nytimes/data.json")
    with pytest.raises(UpstreamIntegrityError, match="nytimes/data.json"):
        load_rows("nyt_books", resolve_source(root, manifest=manifest))


def test_missing_source_offline_names_the_variable(upstream, monkeypatch):
    _, manifest = upstream
    monkeypatch.delenv(SOURCE_VARIABLE, raising=False)
    monkeypatch.setenv(BASE_URL_VARIABLE, f"http://127.0.0.1:{_closed_port()}/")
    source = resolve_source(manifest=manifest)
    with pytest.raises(UpstreamSourceError, match=SOURCE_VARIABLE):
        source.read_bytes("nytimes/data.json")


def test_download_from_loopback_is_verified_and_cached(upstream, monkeypatch):
    root, manifest = upstream
    monkeypatch.delenv(SOURCE_VARIABLE, raising=False)
    server = _Server(root)
    try:
        monkeypatch.setenv(BASE_URL_VARIABLE, server.url)
        downloaded = resolve_source(manifest=manifest)
        rows = load_rows("global_opinionqa_contentious", downloaded)
        assert rows == load_rows("global_opinionqa_contentious", resolve_source(root, manifest=manifest))
        fetched = len(server.requests)
        assert fetched == 2  # data.json and question_similarity.json
        downloaded.read_bytes("Global_Values/data/data.json")
        assert len(server.requests) == fetched  # served from the cache
        # A server that hands out other bytes is caught, and the file is named.
        (root / "nytimes/data.json").write_bytes(b"{}")
        with pytest.raises(UpstreamIntegrityError, match="nytimes/data.json"):
            downloaded.read_bytes("nytimes/data.json")
    finally:
        server.close()


def test_originals_are_pseudonymised_in_memory(tmp_path):
    mirror_root = tmp_path / "mirror"
    mirror = resolve_source(mirror_root, manifest=write_upstream(mirror_root))
    original_root = tmp_path / "original"
    original = resolve_source(original_root, manifest=write_upstream(original_root, originals=True))
    raw = original_annotation_files()
    assert (original_root / RATINGS).read_bytes() == raw[RATINGS]
    for relpath in (RATINGS, DEMOGRAPHICS):
        clean = original.read_bytes(relpath)
        assert clean == mirror.read_bytes(relpath)
        assert not any(worker.encode() in clean for worker in WORKERS)
    pseudonyms = {"anon-" + hashlib.sha256(f"distalign:{w}".encode()).hexdigest()[:12] for w in WORKERS}
    assert set(json.loads(original.read_bytes(RATINGS))["Book 1 By Author 1"]["Female"]) <= pseudonyms
    assert load_rows("nyt_books", original, config="annotations") == load_rows("nyt_books", mirror, config="annotations")


def test_sanitise_qualtrics_export():
    header = ["StartDate", "IPAddress", "LocationLatitude", "RecipientEmail", "Q84", "Q1"]
    rows = [
        header,
        ["Start Date", "IP Address", "Location Latitude", "Recipient Email", "WORKER-IN-HEADER", "Question 1"],
        ['{"ImportId":"startDate"}', '{"ImportId":"ipAddress"}', "{}", "{}", '{"ImportId":"QID335_TEXT"}', "{}"],
        ["2024-05-21", "10.0.0.1", "37.4", "a@b.example", "WORKER1", "42"],
        ["2024-05-21", "10.0.0.2", "37.5", "", "n/a", "7"],
    ]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    out = sources.sanitise_csv(b"\xef\xbb\xbf" + buffer.getvalue().encode())
    assert b"\r\n" not in out
    clean = list(csv.reader(io.StringIO(out.decode())))
    assert clean[0] == header and clean[2] == rows[2]
    assert clean[1][:4] == rows[1][:4] and clean[1][4] == sources.pseudonym("WORKER-IN-HEADER")
    assert clean[3] == ["2024-05-21", "", "", "", sources.pseudonym("WORKER1"), "42"]
    assert clean[4] == ["2024-05-21", "", "", "", "n/a", "7"]


def test_write_manifest_records_both_hashes(tmp_path):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.csv").write_bytes(b"x,y\n")
    (root / "b.json").write_bytes(b"{}")
    tsv = tmp_path / "SANITISED.tsv"
    mirror_hash = hashlib.sha256(b"x,y\n").hexdigest()
    tsv.write_text(f"path\tupstream_sha256\tmirror_sha256\nsub/a.csv\t{'0' * 64}\t{mirror_hash}\n")
    manifest = sources.write_manifest(root, tsv, out=tmp_path / "m.json")
    assert manifest["files"] == {
        "b.json": {"size": 2, "sha256": hashlib.sha256(b"{}").hexdigest()},
        "sub/a.csv": {"size": 4, "sha256": mirror_hash, "upstream_sha256": "0" * 64},
    }
    assert manifest["commit"] == sources.UPSTREAM_COMMIT


@pytest.mark.mirror
def test_mirror_matches_the_pinned_manifest(mirror_source):
    source = resolve_source(mirror_source)
    files = sources.load_manifest()["files"]
    on_disk = sorted(p.relative_to(mirror_source).as_posix() for p in Path(mirror_source).rglob("*") if p.is_file())
    assert sorted(files) == on_disk
    assert sum(1 for entry in files.values() if "upstream_sha256" in entry) == 16
    for relpath in files:
        assert source.path(relpath) == Path(mirror_source).resolve() / relpath  # mirror bytes: used as they are


@pytest.mark.mirror
def test_sanitising_the_mirror_changes_nothing(mirror_source):
    """The in-memory rules write files exactly as the mirror did, so builds from originals match."""
    for relpath, entry in sources.load_manifest()["files"].items():
        if "upstream_sha256" in entry:
            data = (Path(mirror_source) / relpath).read_bytes()
            assert sources.sanitise(relpath, data) == data, relpath


def test_tampered_copy_of_the_mirror_is_refused(tmp_path):
    # The pinned manifest itself: a file with the right name but other bytes is refused.
    root = tmp_path / "copy"
    (root / "inputs/toy_problems/biased_coin").mkdir(parents=True)
    (root / "inputs/toy_problems/biased_coin/benchmark.json").write_text("{}")
    with pytest.raises(UpstreamIntegrityError, match="biased_coin/benchmark.json"):
        resolve_source(root).read_json("inputs/toy_problems/biased_coin/benchmark.json")
    shutil.rmtree(root)


@pytest.mark.mirror
def test_pinned_files_download_from_a_loopback_copy_of_the_mirror(mirror_source, monkeypatch):
    monkeypatch.delenv(SOURCE_VARIABLE, raising=False)
    server = _Server(Path(mirror_source))
    try:
        monkeypatch.setenv(BASE_URL_VARIABLE, server.url)
        downloaded = resolve_source()
        # A name with spaces and a comma travels URL-quoted.
        relpath = "results/human_annotations/Distributional_Alignment_No_Steering_May 21, 2024_18.01.csv"
        assert downloaded.read_bytes(relpath) == (Path(mirror_source) / relpath).read_bytes()
        rows = load_rows("global_opinionqa_contentious", downloaded)
        assert rows == load_rows("global_opinionqa_contentious", mirror_source)
    finally:
        server.close()
