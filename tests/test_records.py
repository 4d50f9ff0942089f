"""Run records and their append-only store."""

from __future__ import annotations

import json

import pytest

from distalign_data.records import RecordStore, RunRecord, record_key


def make_record(row_id: str, **changes) -> RunRecord:
    fields = dict(model="hf:tiny", dataset="nyt_books", row_id=row_id, question_id=row_id.split("/")[0],
                  group_attribute="SEX", group="Male", method="sequence", steering="none",
                  options=["x", "y"], distribution=[0.25, 0.75], parse_status="ok")
    fields.update(changes)
    return RunRecord(**fields)


def test_key_changes_with_every_identifying_field():
    base = ("m", "d", "r", "sequence", "none")
    keys = {record_key(*base)}
    for i in range(5):
        changed = list(base)
        changed[i] = changed[i] + "x"
        keys.add(record_key(*changed))
    assert len(keys) == 6


def test_append_skips_stored_keys_and_round_trips(tmp_path):
    store = RecordStore(tmp_path)
    assert store.append([make_record("a/Male"), make_record("b/Male")]) == 2
    assert store.append([make_record("a/Male", distribution=[1.0, 0.0]), make_record("c/Male")]) == 1
    records = RecordStore(tmp_path).records()
    assert [r.row_id for r in records] == ["a/Male", "b/Male", "c/Male"]
    assert records[0].distribution == [0.25, 0.75]  # the first record of a key is never replaced
    assert records[0].comparable() == make_record("a/Male").comparable()


def test_partial_last_line_from_a_crash_is_ignored_then_cut(tmp_path):
    store = RecordStore(tmp_path)
    store.append([make_record("a/Male")])
    with store.path.open("a", encoding="utf-8") as handle:
        handle.write('{"key": "half a reco')
    reopened = RecordStore(tmp_path)
    assert [r.row_id for r in reopened.records()] == ["a/Male"]
    reopened.append([make_record("b/Male")])
    lines = store.path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["row_id"] for line in lines] == ["a/Male", "b/Male"]


def test_two_stores_on_one_directory_see_each_others_records(tmp_path):
    first, second = RecordStore(tmp_path), RecordStore(tmp_path)
    first.append([make_record("a/Male")])
    assert second.append([make_record("a/Male"), make_record("b/Male")]) == 1
    assert first.keys() == {make_record("a/Male").key, make_record("b/Male").key}


def test_manifest_merges_one_level(tmp_path):
    store = RecordStore(tmp_path)
    store.update_manifest({"models": {"m1": {"seed": 1}}, "package_version": "0.1.0"})
    merged = store.update_manifest({"models": {"m2": {"seed": 2}}})
    assert merged == {"models": {"m1": {"seed": 1}, "m2": {"seed": 2}}, "package_version": "0.1.0"}
    assert RecordStore(tmp_path).manifest() == merged


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"parse_status": "fine"}, "parse_status 'fine'"),
        ({"distribution": [1.0]}, "1 entries for 2 options"),
        ({"distribution": None}, "no distribution but parse_status 'ok'"),
    ],
)
def test_malformed_records_are_refused_with_the_row_named(changes, message):
    with pytest.raises(ValueError, match="a/Male") as error:
        make_record("a/Male", **changes)
    assert message in str(error.value)
