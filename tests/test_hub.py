"""Hub-ready folders: round trip through ``load_dataset``, cards, no worker IDs, release."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from datasets import load_dataset
from huggingface_hub import HfApi

from distalign_data import hub
from distalign_data.benchmarks import load_benchmark
from distalign_data.cli import main
from distalign_data.names import DATASETS
from distalign_data.sources import CACHE_VARIABLE, resolve_source

from tests.upstream_helpers import WORKERS, write_upstream

CONFIGS = [("opinionqa_subset", "default"), ("global_opinionqa_contentious", "default"),
           ("nyt_books", "default"), ("nyt_books", "annotations")]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def fixture_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("upstream") / "tree"
    return resolve_source(root, manifest=write_upstream(root))


@pytest.fixture(scope="module")
def built(fixture_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("hub")
    hub.build_folders(fixture_source, out, DATASETS)
    return out


@pytest.fixture()
def metric_dir(tmp_path):
    folder = tmp_path / "metric"
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "README.md").write_text("---\nsdk: gradio\n---\n# distalign\n")
    (folder / "distalign.py").write_text("# metric\n")
    (folder / "__pycache__" / "distalign.cpython-311.pyc").write_bytes(b"\0")
    return folder


def _front_matter(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.mark.parametrize(("name", "config"), CONFIGS)
def test_folder_round_trip_equals_builder(built, fixture_source, name, config):
    loaded = load_dataset(str(built / name), config, split="test")
    expected = load_benchmark(name, config=config, source=fixture_source)
    assert loaded.features == expected.features
    assert loaded.to_list() == expected.to_list()


def test_card_yaml_comes_from_builder_info(built, fixture_source):
    meta = _front_matter(built / "nyt_books" / "README.md")
    assert [c["config_name"] for c in meta["configs"]] == ["default", "annotations"]
    assert meta["configs"][0]["default"] is True
    assert meta["configs"][1]["data_files"] == [{"split": "test", "path": "annotations/test-*.parquet"}]
    infos = {info["config_name"]: info for info in meta["dataset_info"]}
    assert infos["default"]["splits"][0]["num_examples"] == 28
    assert infos["annotations"]["splits"][0]["num_examples"] == 4
    assert [f["name"] for f in infos["annotations"]["features"]][:5] == ["id", "question_id", "title", "author", "annotator"]
    for config, folder in (("default", "data"), ("annotations", "annotations")):
        parquet = built / "nyt_books" / folder / hub.DATA_FILE
        assert infos[config]["download_size"] == parquet.stat().st_size > 0
    assert meta["size_categories"] == ["n<1K"]
    gv = _front_matter(built / "global_opinionqa_contentious" / "README.md")
    assert gv["license"] == "cc-by-nc-sa-4.0" and gv["dataset_info"]["splits"][0]["num_examples"] == 4


def test_card_text_quotes_computed_numbers(built):
    oqa = (built / "opinionqa_subset" / "README.md").read_text()
    assert "Rows absent by construction: **T2 / Male**" in oqa and "11 rows, 2 questions" in oqa
    nyt = (built / "nyt_books" / "README.md").read_text()
    assert "4 ratings\nfrom 3 annotators" in nyt
    assert "no licence" in nyt and "36869b56b214b5ddce13dc234d62b4cbce3706cd" in nyt


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _published_text(folder: Path) -> str:
    """Every string value of every Parquet file under ``folder``, plus every text file."""
    parts = []
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".parquet":
            parts.extend(_strings(pq.read_table(path).to_pylist()))
        elif path.is_file():
            parts.append(path.read_text(encoding="utf-8"))
    return "\n".join(parts)


def _assert_no_worker_ids(text: str, ids: set[str]) -> None:
    assert ids, "no worker IDs collected"
    hex_parts = {value[len("anon-"):] for value in ids if value.startswith("anon-")}
    tokens = set(re.findall(r"[0-9a-f]{12}", text))
    assert not tokens & hex_parts
    words = set(re.findall(r"[A-Za-z0-9_\-]+", text))
    assert not words & ids


def test_worker_id_check_catches_a_leak():
    leaked = "anon-0123456789ab"
    for text in (f"rated by {leaked}.", "x/0123456789ab/y"):
        with pytest.raises(AssertionError):
            _assert_no_worker_ids(text, {leaked})


def test_fixture_folders_hold_no_worker_id(built, fixture_source):
    from distalign_data.sources import pseudonym

    ids = set(WORKERS) | {pseudonym(w) for w in WORKERS}
    _assert_no_worker_ids(_published_text(built), ids)


def test_release_dry_run_lists_files_and_pushes_nothing(built, metric_dir, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    api = RecordingApi()
    uploads = hub.release(built, dry_run=True, api=api, metric_dir=metric_dir)
    assert api.calls == []
    out = capsys.readouterr().out
    assert "would push 3 files" in out and "dataset distalign/nyt_books" in out
    assert "annotations/test-00000-of-00001.parquet" in out and "space distalign/distalign" in out
    assert [u.repo_id for u in uploads] == [f"distalign/{name}" for name in DATASETS] + ["distalign/distalign"]
    assert "__pycache__" not in out


class RecordingApi(HfApi):
    """An ``HfApi`` whose repository and commit calls are recorded instead of sent."""

    def __init__(self):
        super().__init__(endpoint="http://127.0.0.1:9")
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_commit(self, repo_id, operations, **kwargs):
        self.calls.append(("create_commit", repo_id, {**kwargs, "operations": list(operations)}))


def test_release_pushes_every_file_with_the_environment_token(built, metric_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_from_environment")
    api = RecordingApi()
    hub.release(built, api=api, metric_dir=metric_dir)
    repos = [(call[1], call[2]["repo_type"]) for call in api.calls if call[0] == "create_repo"]
    assert repos == [(f"distalign/{n}", "dataset") for n in DATASETS] + [("distalign/distalign", "space")]
    assert api.calls[-2][2]["space_sdk"] == "gradio"
    commits = {call[1]: call[2] for call in api.calls if call[0] == "create_commit"}
    assert all(commit["token"] == "hf_from_environment" for commit in commits.values())
    nyt = commits["distalign/nyt_books"]["operations"]
    assert sorted(op.path_in_repo for op in nyt) == [
        "README.md", "annotations/test-00000-of-00001.parquet", "data/test-00000-of-00001.parquet"]
    card = next(op for op in nyt if op.path_in_repo == "README.md")
    assert Path(card.path_or_fileobj).read_bytes() == (built / "nyt_books" / "README.md").read_bytes()
    space = commits["distalign/distalign"]
    assert space["repo_type"] == "space"
    assert sorted(op.path_in_repo for op in space["operations"]) == ["README.md", "distalign.py"]


def test_release_needs_a_token_and_fails_clearly_offline(built, metric_dir, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(hub.ReleaseError, match="HF_TOKEN"):
        hub.release(built, metric_dir=metric_dir)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    # Nothing listens on port 9: the first Hub call fails the way it does without a network.
    with pytest.raises(hub.ReleaseError, match="could not push dataset distalign/opinionqa_subset") as caught:
        hub.release(built, api=HfApi(endpoint="http://127.0.0.1:9"), metric_dir=metric_dir)
    assert "hf_secret_value" not in str(caught.value)


def test_release_refuses_unbuilt_folders(tmp_path, metric_dir):
    with pytest.raises(hub.ReleaseError, match="run `distalign build"):
        hub.release(tmp_path, dry_run=True, metric_dir=metric_dir)


# ---- the mirror: the acceptance build through the CLI ------------------------------------------


def _mirror_worker_ids(root: Path) -> set[str]:
    """Every value of the upstream's worker-ID fields, as the mirror holds them."""
    ids = set()
    for path in sorted((root / "results" / "human_annotations").glob("*.csv")) + [
        root / "nytimes/individual_annotations/nytimes_annotator_demographics.csv"
    ]:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        if "Q84" in rows[0]:
            column = rows[0].index("Q84")
            ids.update(row[column] for row in rows[1:] if len(row) > column and row[column].startswith("anon-"))
    ratings = json.loads((root / "nytimes/individual_annotations/NYTIMES_proportions_ID.json").read_text())
    for book in ratings.values():
        for group in ("Democrat", "Republican", "Male", "Female"):
            ids.update(book[group])
    return ids


@pytest.mark.mirror
def test_mirror_build_via_cli(mirror_source, tmp_path, capsys):
    out = tmp_path / "built"
    assert main(["build", "--source", str(mirror_source), "--out", str(out)]) == 0
    assert "built 3 datasets" in capsys.readouterr().out
    counts = {(name, config): len(load_dataset(str(out / name), config, split="test")) for name, config in CONFIGS}
    assert counts == {("opinionqa_subset", "default"): 599, ("global_opinionqa_contentious", "default"): 302,
                      ("nyt_books", "default"): 940, ("nyt_books", "annotations"): 9048}
    ids = _mirror_worker_ids(Path(mirror_source))
    assert len(ids) > 335
    _assert_no_worker_ids(_published_text(out), ids)
    nyt_card = (out / "nyt_books" / "README.md").read_text()
    assert "14 (book, group) cells (7 Male, 7 Republican)" in nyt_card and "hold 335" in nyt_card
    assert "**FEM2_W29 / Male**" in (out / "opinionqa_subset" / "README.md").read_text()
    # The largest config (9,048 ratings) sets the size category.
    assert _front_matter(out / "nyt_books" / "README.md")["size_categories"] == ["1K<n<10K"]


def test_build_without_any_source_fails_with_one_clear_line(tmp_path, monkeypatch, capsys):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("DISTALIGN_SOURCE", raising=False)
    monkeypatch.setenv("DISTALIGN_UPSTREAM_URL", f"http://127.0.0.1:{port}/")
    assert main(["build", "--out", str(tmp_path / "out"), "--datasets", "nyt_books"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("distalign build: no upstream source") and "DISTALIGN_SOURCE" in error
