"""The study app in process (TestClient): the session flow, failures, restarts and exports."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml
from fastapi.testclient import TestClient

from collabrl.backends.errors import TransientError
from collabrl.backends.scripted import ScriptedBackend
from collabrl.cli import main
from collabrl.config import ConfigError
from collabrl.study.app import create_app
from collabrl.study.chat import StudySystem
from collabrl.study.config import load_study_config
from collabrl.types import GenerationParams

from .conftest import Person, events_of, links_for, study_data

ADMIN = "admin-token-for-tests"


def systems_with(backend) -> dict[str, StudySystem]:
    return {
        name: StudySystem(name, backend, GenerationParams(), "Be brief.")
        for name in ("alpha", "beta")
    }


def db_rows(config, sql: str) -> list[tuple]:
    with sqlite3.connect(config.database.removeprefix("sqlite:///")) as db:
        return db.execute(sql).fetchall()


@pytest.fixture
def app_for():
    def make(config, backend=None):
        systems = systems_with(backend) if backend is not None else None
        return TestClient(create_app(config, admin_token=ADMIN, systems=systems))

    return make


def test_message_is_stored_before_the_model_is_asked(make_config, app_for):
    config = make_config()
    seen: list[list[tuple]] = []

    def reply(messages, params, index):
        seen.append(db_rows(config, "SELECT role, content FROM messages"))
        assert messages[0].role == "system" and messages[0].content == "Be brief."
        return f"You said: {messages[-1].content}"

    (path,) = links_for(config, 1)
    with app_for(config, ScriptedBackend(reply_fn=reply)) as client:
        response = Person(client, path).say("  draft my email  ")
    events = events_of(response.text)
    assert response.status_code == 200 and events[-1]["type"] == "done"
    assert "".join(e["text"] for e in events if e["type"] == "chunk") == "You said: draft my email"
    assert seen == [[("user", "draft my email")]]
    assert db_rows(config, "SELECT seq, role FROM messages") == [(1, "user"), (2, "assistant")]


def test_rating_is_asked_every_n_turns_and_blocks_the_chat(make_config, app_for):
    config = make_config(rating_every=2)
    (path,) = links_for(config, 1)
    with app_for(config, ScriptedBackend(["ok"])) as client:
        person = Person(client, path)
        assert events_of(person.say("one").text)[-1]["rating_due"] is None
        assert events_of(person.say("two").text)[-1]["rating_due"] == 2
        assert person.say("three").status_code == 409
        assert person.rate(1, 5).status_code == 409  # not the pending turn
        assert person.rate(2, 11).status_code == 422
        assert person.rate(2, 7).json() == {"ok": True, "stored": True}
        assert person.rate(2, 3).json() == {"ok": True, "stored": False}  # a repeat is ignored
        assert person.say("three").status_code == 200
    assert db_rows(config, "SELECT kind, turn, value FROM ratings") == [("turn", 2, 7)]


def test_backend_failure_gives_a_retry_message_and_keeps_the_text(make_config, app_for):
    config = make_config()
    failures = iter([TransientError("server down")])

    def reply(messages, params, index):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "Recovered reply."

    (path,) = links_for(config, 1)
    backend = ScriptedBackend(reply_fn=reply)
    with app_for(config, backend) as client:
        person = Person(client, path)
        error = events_of(person.say("my precious paragraph").text)[-1]
        assert error["type"] == "error" and "Retry" in error["message"]
        assert "my precious paragraph" in client.get(path).text
        assert person.say("another").status_code == 409  # the reply is still owed
        retried = events_of(client.post(f"{path}/retry", headers=person.headers).text)
        assert retried[-1]["type"] == "done"
        assert client.post(f"{path}/retry", headers=person.headers).status_code == 409
    assert db_rows(config, "SELECT role, content FROM messages") == [
        ("user", "my precious paragraph"),
        ("assistant", "Recovered reply."),
    ]
    (event,) = db_rows(config, "SELECT kind, detail FROM events WHERE kind = 'backend_error'")
    assert json.loads(event[1])["reason"] == "transient"


def test_restart_resumes_where_the_participant_was(make_config, app_for):
    config = make_config(rating_every=1)
    (path,) = links_for(config, 1)
    with app_for(config, ScriptedBackend(["first reply"])) as client:
        person = Person(client, path)
        person.say("hello")
        client.post(f"{path}/draft", json={"text": "my draft so far"}, headers=person.headers)
    with app_for(config, ScriptedBackend(["second reply"])) as client:  # a new server process
        page = client.get(path).text
        assert "hello" in page and "first reply" in page and "my draft so far" in page
        assert 'data-rating-due="1"' in page
        person = Person(client, path)  # the CSRF key survived the restart too
        assert person.rate(1, 9).status_code == 200
        assert person.say("go on").status_code == 200


def test_finish_validates_and_keeps_the_document(make_config, app_for):
    config = make_config(systems_per_participant=2)
    (path,) = links_for(config, 1)
    with app_for(config, ScriptedBackend(["reply"])) as client:
        person = Person(client, path)
        person.say("hi")
        refused = person.finish("my long document", rating_engagement="")
        assert refused.status_code == 400 and "engagement" in refused.text
        assert "my long document" in refused.text
        assert person.finish("my long document").status_code == 303
        assert "Session 2 of 2" in client.get(path).text
        person.say("hi again")
        assert person.finish().status_code == 303
        assert "Thank you" in client.get(path).text
        assert person.say("more").status_code == 409
    rows = db_rows(config, "SELECT position, document, finished_at - started_at FROM sessions")
    assert [r[:2] for r in rows] == [(0, "my long document"), (1, "The final text.")]
    assert all(r[2] >= 0 for r in rows)


def test_admin_export_jsonl_and_csv(make_config, app_for):
    config = make_config(rating_every=1)
    (path,) = links_for(config, 1)
    with app_for(config, ScriptedBackend(["reply"])) as client:
        person = Person(client, path)
        person.say("hi")
        person.rate(1, 4)
        person.finish()
        auth = {"Authorization": f"Bearer {ADMIN}"}
        (record,) = [
            json.loads(line)
            for line in client.get("/admin/export.jsonl", headers=auth).text.splitlines()
        ]
        csv_text = client.get("/admin/export.csv", headers=auth).text
        admin_page = client.get("/admin", headers=auth).text
    assert record["ratings"] == {"document": 8, "interaction": 7, "engagement": 6}
    assert record["turn_ratings"] == {"1": 4} and record["turns"] == 1
    assert [m["role"] for m in record["messages"]] == ["user", "assistant"]
    assert record["seconds_on_task"] >= 0 and record["label"] == "Assistant A"
    header, row = csv_text.splitlines()
    assert header.endswith("turn_1,document,interaction,engagement") and row.endswith("4,8,7,6")
    assert path.rsplit("/", 1)[1] not in csv_text + json.dumps(record) + admin_page


def test_invite_cli_creates_links_up_to_the_configured_number(tmp_path, capsys):
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(study_data(tmp_path, participants=3)))
    links = tmp_path / "links.txt"
    assert main(["study", "invite", "--config", str(config), "--out", str(links)]) == 0
    assert main(["study", "invite", "--config", str(config)]) == 0  # already 3: none more
    assert (
        main(
            [
                "study",
                "invite",
                "--config",
                str(config),
                "--n",
                "2",
                "public_url=https://study.example.org/",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out.split()
    assert len(printed) == 5 and printed[-1].startswith("https://study.example.org/p/")
    assert links.read_text().split() == printed[:3] and links.stat().st_mode & 0o077 == 0
    assert len(set(printed)) == 5


def test_config_errors_name_the_field(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(study_data(tmp_path, rating_every=0, systems_per_participant=3)))
    with pytest.raises(
        ConfigError, match="rating_every: Input should be greater than or equal to 1"
    ):
        load_study_config(path)
    with pytest.raises(ConfigError, match="systems_per_participant"):
        load_study_config(path, ["rating_every=2"])
    with pytest.raises(ConfigError, match="roles does not define"):
        load_study_config(
            path, ["rating_every=2", "systems_per_participant=1", "systems=[{name: x, role: nope}]"]
        )
