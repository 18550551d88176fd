"""``collabrl study analyze`` on a crafted database gives known numbers, plots and a summary."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session

from collabrl.cli import main
from collabrl.study.analyze import summarize
from collabrl.study.db import Participant, Rating, StudySession, open_database
from collabrl.study.export import session_records

# participant -> system -> (document, interaction, engagement, turn ratings, seconds on task)
STUDY = {
    0: {"a": (8, 7, 9, [6, 8], 600), "b": (5, 5, 5, [4], 300)},
    1: {"a": (6, 7, 9, [7], 600), "b": (5, 6, 5, [5, 5], 300)},
    2: {"a": (7, 7, 9, [], 600), "b": (6, 7, 5, [6], 300)},
    3: {"a": (9, 7, 9, [9], 600), "b": (4, 8, 5, [], 300)},
}
KINDS = ("document", "interaction", "engagement")


@pytest.fixture
def crafted_db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'crafted.sqlite'}"
    engine = open_database(url)
    with Session(engine) as db, db.begin():
        for number, systems in STUDY.items():
            person = Participant(number=number, token_hash=f"{number:064d}", created_at=0.0)
            db.add(person)
            db.flush()
            for position, (system, (*finals, turns, seconds)) in enumerate(systems.items()):
                start = 1000.0 * (position + 1)
                session = StudySession(
                    participant_id=person.id,
                    position=position,
                    system=system,
                    label=f"Assistant {position}",
                    task_id="t",
                    started_at=start,
                    finished_at=start + seconds,
                    document="doc",
                )
                db.add(session)
                db.flush()
                for kind, value in zip(KINDS, finals):
                    db.add(
                        Rating(session_id=session.id, kind=kind, turn=0, value=value, created_at=0)
                    )
                for turn, value in enumerate(turns, start=1):
                    db.add(
                        Rating(
                            session_id=session.id, kind="turn", turn=turn, value=value, created_at=0
                        )
                    )
        db.add(
            StudySession(
                participant_id=person.id,
                position=2,
                system="b",
                label="x",
                task_id="t",
                started_at=5000.0,
            )
        )  # unfinished: no time, no ratings
    engine.dispose()
    return url


def test_means_intervals_pairs_and_time(crafted_db):
    engine = open_database(crafted_db, create=False)
    with Session(engine) as db:
        summary = summarize(session_records(db), resamples=500)
    engine.dispose()
    ratings = summary["ratings"]
    assert ratings["a"]["document"]["mean"] == pytest.approx(7.5)
    assert ratings["b"]["document"]["mean"] == pytest.approx(5.0)
    assert ratings["a"]["interaction"] == {"mean": 7.0, "low": 7.0, "high": 7.0, "n": 4}
    assert (
        ratings["a"]["turn"]["mean"] == pytest.approx((7 + 7 + 9) / 3)
        and ratings["a"]["turn"]["n"] == 3
    )
    low, high = ratings["a"]["document"]["low"], ratings["a"]["document"]["high"]
    assert 6 <= low < 7.5 < high <= 9
    assert summary["minutes_on_task"]["a"] == {"mean": 10.0, "low": 10.0, "high": 10.0, "n": 4}
    assert summary["minutes_on_task"]["b"]["mean"] == pytest.approx(5.0)
    assert summary["sessions"] == {
        "a": {"assigned": 4, "finished": 4},
        "b": {"assigned": 5, "finished": 4},
    }
    pairs = {p["kind"]: p for p in summary["paired"]}
    assert (pairs["document"]["a"], pairs["document"]["b"]) == ("a", "b")
    assert pairs["document"]["mean"] == pytest.approx(2.5) and not pairs["document"]["within_noise"]
    assert pairs["engagement"] == {**pairs["engagement"], "mean": 4.0, "low": 4.0, "high": 4.0}
    assert (
        pairs["interaction"]["mean"] == pytest.approx(0.5) and pairs["interaction"]["within_noise"]
    )
    assert pairs["turn"]["n"] == 2  # participants with turn ratings for both systems


def test_cli_writes_summary_and_plots(crafted_db, tmp_path, capsys):
    out = tmp_path / "analysis"
    assert main(["study", "analyze", crafted_db, "--out", str(out), "--resamples", "200"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["participants"] == 4
    markdown = (out / "summary.md").read_text()
    assert "| a | 4 / 4 | 7.5 [" in markdown and "| a - b | Document quality | 2.5 [" in markdown
    for plot in ("ratings.png", "time_on_task.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG")
    assert "Paired comparisons" in capsys.readouterr().out


def test_cli_reports_a_missing_database(tmp_path, capsys):
    assert main(["study", "analyze", str(tmp_path / "none.sqlite"), "--out", str(tmp_path)]) == 2
    assert "no study database" in capsys.readouterr().out
