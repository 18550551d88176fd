"""Export rules on crafted records: pair selection, gap, validation counts, split by conversation."""

import json
from collections import Counter

import pytest
from datasets import load_from_disk

from collabrl.config import ExportConfig
from collabrl.export import dpo_pair, export, split_of
from collabrl.records import read_jsonl


def candidate(text, mr):
    return {"text": text, "mr": mr}


def turn(cid, t, *cands):
    return {
        "conversation_id": cid,
        "turn": t,
        "prefix": [{"role": "user", "content": f"q {cid}"}],
        "candidates": list(cands),
    }


def conversation(cid, status="ok"):
    return {
        "conversation_id": cid,
        "status": status,
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
    }


@pytest.fixture
def run_dir(tmp_path):
    folder = tmp_path / "gen"
    folder.mkdir()
    turns = [
        turn("c1", 0, candidate("best", 0.9), candidate("mid", 0.5), candidate("worst", 0.1)),
        turn("c1", 1, candidate("close a", 0.51), candidate("close b", 0.50)),  # gap 0.01
        turn("c2", 0, candidate("same", 0.9), candidate("same", 0.2)),
        turn("c2", 1, candidate("", 0.9), candidate("x", 0.2)),
        turn("c3", 0, candidate("only", 0.9), candidate("unscored", None)),
    ]
    (folder / "turns.jsonl").write_text("".join(json.dumps(t) + "\n" for t in turns))
    convs = [conversation("c1"), conversation("c2"), conversation("c3", status="failed")]
    (folder / "conversations.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs))
    return folder


def test_pair_is_best_against_worst_in_trl_format(run_dir):
    counts = Counter()
    pair = dpo_pair(next(read_jsonl(run_dir / "turns.jsonl")), 0.02, counts)
    assert pair["chosen"] == [{"role": "assistant", "content": "best"}]
    assert pair["rejected"] == [{"role": "assistant", "content": "worst"}]
    assert pair["prompt"] == [{"role": "user", "content": "q c1"}]
    assert pair["mr_chosen"] - pair["mr_rejected"] == pytest.approx(0.8)


def test_export_counts_every_dropped_row(run_dir, tmp_path):
    out = tmp_path / "out"
    report = export(
        ExportConfig(input_dir=run_dir, output_dir=out, eval_fraction=0.0, save_dataset=True)
    )
    assert report["dpo"] == {
        "kept": 1,
        "gap_below_min": 1,
        "chosen_equals_rejected": 1,
        "empty_reply": 1,
        "fewer_than_two_scored": 1,
    }
    assert report["sft"] == {"kept": 2, "failed_conversation": 1}
    assert len(list(read_jsonl(out / "dpo_train.jsonl"))) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert {f["file"]: f["rows"] for f in manifest["files"]}["sft_train.jsonl"] == 2
    assert load_from_disk(str(out / "sft_train"))[0]["messages"][1]["content"] == "a"


def test_lower_min_gap_keeps_close_pairs(run_dir, tmp_path):
    report = export(
        ExportConfig(
            input_dir=run_dir,
            output_dir=tmp_path / "o",
            min_gap=0.0,
            eval_fraction=0.0,
            save_dataset=False,
        )
    )
    assert report["dpo"]["kept"] == 2


def test_split_is_by_conversation_and_stable():
    ids = [f"conv-{i}" for i in range(2000)]
    splits = {i: split_of(i, 0.1) for i in ids}
    assert splits == {i: split_of(i, 0.1) for i in ids}
    share = sum(s == "eval" for s in splits.values()) / len(ids)
    assert 0.07 < share < 0.13


def test_rows_of_one_conversation_never_straddle_the_split(tmp_path):
    folder = tmp_path / "gen"
    folder.mkdir()
    turns = [
        turn(f"c{i}", t, candidate("good", 0.9), candidate("bad", 0.1))
        for i in range(50)
        for t in range(3)
    ]
    (folder / "turns.jsonl").write_text("".join(json.dumps(t) + "\n" for t in turns))
    (folder / "conversations.jsonl").write_text("")
    out = tmp_path / "out"
    export(ExportConfig(input_dir=folder, output_dir=out, eval_fraction=0.3, save_dataset=False))
    train = {r["conversation_id"] for r in read_jsonl(out / "dpo_train.jsonl")}
    held = {r["conversation_id"] for r in read_jsonl(out / "dpo_eval.jsonl")}
    assert train and held and not train & held
    assert len(list(read_jsonl(out / "dpo_train.jsonl"))) == 3 * len(train)


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="collabrl generate"):
        export(ExportConfig(input_dir=tmp_path / "none", output_dir=tmp_path / "o"))
