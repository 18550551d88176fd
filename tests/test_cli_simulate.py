"""`collabrl simulate` and `collabrl reward` on the scripted config, as a user runs them."""

import json

import pytest

from collabrl.cli import main
from collabrl.records import read_jsonl


def test_simulate_writes_one_record_per_task_and_resumes(workdir, capsys):
    assert main(["simulate", "--config", "configs/scripted.yaml"]) == 0
    output = workdir / "runs/scripted/conversations.jsonl"
    records = list(read_jsonl(output))
    assert sorted(r["task_id"] for r in records) == ["email-landlord", "math-apples", "poem-autumn"]
    for r in records:
        assert r["ended"] == "user_terminated"
        roles = [m["role"] for m in r["conversation"]["messages"]]
        assert roles == ["user", "assistant", "user", "assistant"]
    manifest = json.loads((output.parent / "manifest.json").read_text())
    assert manifest["files"][0]["rows"] == 3
    capsys.readouterr()
    # A rerun finds every task done: nothing is simulated or appended again.
    assert main(["simulate", "--config", "configs/scripted.yaml"]) == 0
    assert "0 conversations simulated (3 already done)" in capsys.readouterr().out
    assert len(list(read_jsonl(output))) == 3


def test_simulate_limit_and_missing_tasks(workdir, capsys):
    assert (
        main(
            [
                "simulate",
                "--config",
                "configs/scripted.yaml",
                "simulate.tasks.limit=1",
                "simulate.output=runs/one.jsonl",
            ]
        )
        == 0
    )
    assert len(list(read_jsonl(workdir / "runs/one.jsonl"))) == 1
    assert (
        main(["simulate", "--config", "configs/scripted.yaml", "simulate.tasks.path=nope.jsonl"])
        == 2
    )
    assert "nope.jsonl does not exist" in capsys.readouterr().out


def test_reward_scores_candidates_and_writes_details(workdir, capsys):
    out = workdir / "reward.json"
    assert (
        main(
            [
                "reward",
                "--config",
                "configs/scripted.yaml",
                "--conversation",
                "examples/reward_request.json",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "Multiturn-aware reward" in printed and "Model usage" in printed
    results = json.loads(out.read_text())
    assert [r["reply"][:5] for r in results] == ["Sure!", "The a"]
    for r in results:
        assert len(r["samples"]) == 3 and r["unscored"] == 0
        future = r["samples"][0]["future"]["conversation"]["messages"]
        assert future[1]["role"] == "assistant" and len(future) >= 2
    asks, guesses = results
    # the question leads to the right answer (27) with an engaged assistant: 1 + 1 - tokens
    assert asks["metric_means"] == {
        "interactivity": 1.0,
        "accuracy": 1.0,
        "token_efficiency": pytest.approx(-0.022, abs=0.01),
    }
    # the wrong guess (42) ends the chat: no accuracy, judged passive
    assert guesses["metric_means"]["accuracy"] == 0.0
    assert guesses["metric_means"]["interactivity"] == 0.0
    assert asks["mr"] > 1.9 and guesses["mr"] < 0.1 and asks["mr"] - guesses["mr"] > 1.5


def test_scripted_replies_fit_each_task(workdir):
    """configs/scripted.yaml answers each example task in kind: a poem, the sum, an email."""
    assert main(["simulate", "--config", "configs/scripted.yaml"]) == 0
    records = {r["task_id"]: r for r in read_jsonl(workdir / "runs/scripted/conversations.jsonl")}
    final = {tid: r["conversation"]["messages"][-1]["content"] for tid, r in records.items()}
    assert "leaves 27" in final["math-apples"]
    assert "rain" in final["poem-autumn"] and "apples" not in final["poem-autumn"]
    assert "Dear landlord" in final["email-landlord"] and "apples" not in final["email-landlord"]
    opening = records["poem-autumn"]["conversation"]["messages"][0]["content"]
    assert "poem" in opening and all(not r["flags"] for r in records.values())


def test_reward_samples_candidates_when_none_given(workdir, capsys):
    request = json.loads((workdir / "examples/reward_request.json").read_text())
    del request["candidates"]
    path = workdir / "no_candidates.json"
    path.write_text(json.dumps(request))
    assert (
        main(
            [
                "reward",
                "--config",
                "configs/scripted.yaml",
                "--conversation",
                str(path),
                "--candidates",
                "2",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "Could you tell me" in printed and "Sure. Here is a long" in printed


@pytest.mark.parametrize("flag, sampled", [([], 4), (["--candidates", "2"], 2)])
def test_reward_samples_generate_candidates_unless_told(workdir, flag, sampled):
    """k is one setting: without ``--candidates`` reward samples ``generate.candidates`` replies."""
    request = json.loads((workdir / "examples/reward_request.json").read_text())
    del request["candidates"]
    path = workdir / "no_candidates.json"
    path.write_text(json.dumps(request))
    out = workdir / "reward.json"
    args = ["--conversation", str(path), "--output", str(out), "generate.candidates=4", *flag]
    assert main(["reward", "--config", "configs/scripted.yaml", *args]) == 0
    assert len(json.loads(out.read_text())) == sampled


@pytest.mark.parametrize(
    "override, message",
    [
        ("reward.metrics=[{name: nosuch}]", "unknown metric 'nosuch'"),
        ("reward.metrics=[{name: bleu, options: {colour: red}}]", "unknown option 'colour'"),
        ("reward.metrics=[{name: bleu}, {name: bleu}]", "twice"),
        ("reward.metrics=[{name: bleu, weight: 0}]", "at least one metric with a weight"),
    ],
)
def test_reward_config_errors_are_clear(workdir, capsys, override, message):
    code = main(
        [
            "reward",
            "--config",
            "configs/scripted.yaml",
            "--conversation",
            "examples/reward_request.json",
            override,
        ]
    )
    assert code == 2 and message in capsys.readouterr().out


def test_reward_request_errors_are_clear(workdir, capsys):
    bad = workdir / "bad.json"
    bad.write_text('{"task": {"id": "x"}}')
    assert main(["reward", "--config", "configs/scripted.yaml", "--conversation", str(bad)]) == 2
    assert "not a valid reward request" in capsys.readouterr().out
    request = json.loads((workdir / "examples/reward_request.json").read_text())
    request["conversation"].append({"role": "assistant", "content": "hi"})
    bad.write_text(json.dumps(request))
    assert main(["reward", "--config", "configs/scripted.yaml", "--conversation", str(bad)]) == 2
    assert "ends with a user message" in capsys.readouterr().out
