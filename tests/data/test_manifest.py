import json

import pytest

from asrlab.data.manifest import (ManifestError, Skipped, load_manifest, read_manifest,
                                  write_manifest, write_skipped)


def test_relative_paths_resolve_from_manifest_folder_and_extras_kept(tmp_path):
    (tmp_path / "sub").mkdir()
    m = tmp_path / "sub" / "m.jsonl"
    m.write_text(json.dumps({"audio_filepath": "a/x.wav", "duration": 1.5, "text": "hi",
                             "speaker": "s1"}) + "\n\n")
    (u,) = load_manifest(m)
    assert u.audio_filepath == (tmp_path / "sub" / "a" / "x.wav").resolve()
    assert u.extra == {"speaker": "s1"} and u.id == "x" and u.source.endswith("m.jsonl:1")


def test_every_bad_line_is_reported_with_its_number(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join([
        json.dumps({"audio_filepath": "a.wav", "duration": 1, "text": "ok"}),
        "{not json",
        json.dumps({"audio_filepath": "b.wav", "text": "no duration"}),
        json.dumps({"audio_filepath": "c.wav", "duration": -2, "text": "x"}),
        json.dumps([1, 2]),
        json.dumps({"audio_filepath": 3, "duration": 1, "text": "x"}),
    ]) + "\n")
    with pytest.raises(ManifestError) as e:
        load_manifest(m)
    assert [p.line for p in e.value.problems] == [2, 3, 4, 5, 6]
    assert "m.jsonl:3: missing key(s) duration" in str(e.value)
    utts, problems = read_manifest(m, strict=False)
    assert len(utts) == 1 and len(problems) == 5


def test_write_then_read_round_trip(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"audio_filepath": "w/a.wav", "duration": 2.0, "text": "a b",
                             "id": "k"}) + "\n")
    utts = load_manifest(m)
    out = write_manifest(tmp_path / "copy" / "m2.jsonl", utts)
    again = load_manifest(out)
    assert again[0].audio_filepath == utts[0].audio_filepath and again[0].text == "a b"
    assert json.loads(out.read_text())["audio_filepath"] == "../w/a.wav"


def test_duplicate_ids_are_made_unique(tmp_path):
    m = tmp_path / "m.jsonl"
    line = json.dumps({"audio_filepath": "a.wav", "duration": 1, "text": "x"})
    m.write_text(line + "\n" + line + "\n")
    assert [u.id for u in load_manifest(m)] == ["a", "a#1"]


def test_skipped_lists_are_utf8_json_lines_replaced_whole(tmp_path):
    """One writer for RUN/skipped.jsonl and M.skipped.jsonl: a line per item with the keys of
    Skipped.to_dict(), non-ASCII text as itself, and a second write replaces the first whole."""
    path = tmp_path / "skipped.jsonl"
    path.write_text("an older list\n" * 3)
    items = [Skipped("a", "m.jsonl:3", "empty transcript", split="train", text="  "),
             Skipped("café", "clips/café.mp3", "audio file not found")]
    assert write_skipped(path, items) == path
    text = path.read_bytes().decode("utf-8")
    assert "café" in text and "\\u00e9" not in text
    rows = [json.loads(line) for line in text.splitlines()]
    assert rows == [{"split": "train", "id": "a", "source": "m.jsonl:3",
                     "reason": "empty transcript", "text": "  "},
                    {"id": "café", "source": "clips/café.mp3", "reason": "audio file not found"}]
    write_skipped(path, [])
    assert path.read_text() == "" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
