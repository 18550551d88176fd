"""The fake OpenAI/Anthropic server itself, spoken to with the standard library's HTTP client."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from collabrl.testing.fake_openai import Behaviour, FakeOpenAIServer, as_behaviour, default_reply


def post(
    server: FakeOpenAIServer,
    path: str,
    body: dict,
    timeout: float = 2.0,
    headers: dict | None = None,
) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection(
        "127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=timeout
    )
    try:
        conn.request(
            "POST", path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})}
        )
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


def chat(server, content="hello there", **fields):
    body = {"model": "m", "messages": [{"role": "user", "content": content}], **fields}
    return post(server, "/v1/chat/completions", body)


def test_chat_completion_honours_n_and_reports_usage(fake):
    server = fake()
    status, _, reply = chat(server, n=3, temperature=0.8)
    assert status == 200
    texts = [c["message"]["content"] for c in reply["choices"]]
    assert len(texts) == 3 and len(set(texts)) == 3
    assert [c["finish_reason"] for c in reply["choices"]] == ["stop"] * 3
    usage = reply["usage"]
    assert usage["prompt_tokens"] == 2
    assert usage["completion_tokens"] == sum(len(t.split()) for t in texts)


def test_replies_are_deterministic_and_greedy_at_temperature_zero(fake):
    server = fake()
    first = chat(server, n=2, temperature=0.8, seed=3)[2]["choices"]
    again = chat(server, n=2, temperature=0.8, seed=3)[2]["choices"]
    assert first == again
    greedy = chat(server, n=2, temperature=0)[2]["choices"]
    assert greedy[0]["message"]["content"] == greedy[1]["message"]["content"]
    other_seed = chat(server, n=1, temperature=0.8, seed=4)[2]["choices"][0]
    assert other_seed["message"]["content"] != first[0]["message"]["content"]


def test_ignore_n_returns_one_choice(fake):
    server = fake(ignore_n=True)
    assert len(chat(server, n=4)[2]["choices"]) == 1


def test_max_tokens_and_stop_cut_the_reply(fake):
    server = fake(reply_fn=lambda request, i: "one two three four five")
    choice = chat(server, max_tokens=2)[2]["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("one two", "length")
    choice = chat(server, stop=[" three"])[2]["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("one two", "stop")


def test_anthropic_messages_format(fake):
    server = fake()
    body = {
        "model": "claude",
        "max_tokens": 50,
        "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi you"}]}],
    }
    status, _, reply = post(server, "/v1/messages", body)
    assert status == 200
    assert reply["type"] == "message" and reply["stop_reason"] == "end_turn"
    assert reply["content"][0]["text"].endswith("to: hi you")
    assert reply["usage"]["input_tokens"] == 4


def test_script_runs_in_order_then_replies_normally(fake):
    server = fake(script=[Behaviour.rate_limited(2), 503, Behaviour(text="scripted")])
    status, headers, body = chat(server)
    assert status == 429 and headers["Retry-After"] == "2"
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert chat(server)[0] == 503
    assert chat(server)[2]["choices"][0]["message"]["content"] == "scripted"
    assert chat(server)[2]["choices"][0]["message"]["content"].startswith("Fake reply")
    assert server.request_count == 4


def test_callable_script_and_reply_fn_see_the_request(fake):
    def script(request):
        return 400 if "poison" in request.last_user_text else None

    server = fake(script=script, reply_fn=lambda request, i: f"grade: {len(request.messages)}")
    assert chat(server, "poison pill")[0] == 400
    assert chat(server, "fine")[2]["choices"][0]["message"]["content"] == "grade: 1"


def test_error_body_echoes_the_key_and_uses_the_endpoint_format(fake):
    server = fake(script=[Behaviour.error(401, "Incorrect API key {api_key}")] * 2)
    status, _, body = post(
        server, "/v1/chat/completions", {"messages": []}, headers={"Authorization": "Bearer sk-1"}
    )
    assert (status, body["error"]["message"]) == (401, "Incorrect API key sk-1")
    status, _, body = post(server, "/v1/messages", {"messages": []}, headers={"x-api-key": "ak-2"})
    assert body == {
        "type": "error",
        "error": {"type": "api_error", "message": "Incorrect API key ak-2"},
    }


def test_refusal_and_null_finish_reason(fake):
    server = fake(script=[Behaviour(refusal="I can't help."), Behaviour(finish_reason=None)])
    message = chat(server)[2]["choices"][0]["message"]
    assert (message["content"], message["refusal"]) == (None, "I can't help.")
    assert chat(server)[2]["choices"][0]["finish_reason"] is None


def test_reset_cut_and_hang_break_the_exchange(fake):
    server = fake(script=["reset", "cut", Behaviour.hang(30)])
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        chat(server)
    with pytest.raises(http.client.IncompleteRead):
        chat(server)
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        post(server, "/v1/chat/completions", {}, timeout=0.2)
    server.close()  # releases the hung handler at once
    assert time.monotonic() - started < 1.5


def test_keep_alive_and_request_log(fake):
    server = fake()
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=2)
    for content in ("a", "b"):
        body = json.dumps({"messages": [{"role": "user", "content": content}]})
        conn.request("POST", "/v1/chat/completions", body)
        assert conn.getresponse().read()
    conn.request("GET", "/v1/models")
    assert json.loads(conn.getresponse().read())["data"][0]["id"] == "fake-model"
    conn.close()
    log = server.requests
    assert [r.path for r in log] == ["/v1/chat/completions"] * 2 + ["/v1/models"]
    assert [r.last_user_text for r in log[:2]] == ["a", "b"]
    assert log[0].time <= log[1].time and [r.seq for r in log] == [0, 1, 2]
    with urllib.request.urlopen(f"{server.url}/_fake/log", timeout=2) as response:
        assert json.loads(response.read())["request_count"] == 3


def test_latency_is_added_per_request_in_parallel_threads(fake):
    server = fake(latency=0.3)
    started = time.monotonic()
    conns = [
        http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1])) for _ in range(4)
    ]
    for conn in conns:
        conn.request("POST", "/v1/chat/completions", "{}")
    for conn in conns:
        conn.getresponse().read()
        conn.close()
    assert 0.3 <= time.monotonic() - started < 0.9


def test_script_shorthands():
    assert as_behaviour("reset").reset and as_behaviour("cut").cut
    assert as_behaviour("hang").hang_s and as_behaviour(500).status == 500
    assert as_behaviour(200) == as_behaviour("ok") == Behaviour()
    with pytest.raises(ValueError, match="unknown script item"):
        as_behaviour("explode")
    assert default_reply("x", 0, 0.0, None) == default_reply("x", 5, 0.0, 9)


def test_runs_as_a_subprocess():
    process = subprocess.Popen(
        [sys.executable, "-m", "collabrl.testing.fake_openai", "--port", "0", "--ignore-n"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        request = urllib.request.Request(
            f"{base_url}/chat/completions", data=json.dumps({"n": 3}).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=2) as response:
            assert len(json.loads(response.read())["choices"]) == 1
        with urllib.request.urlopen(base_url.replace("/v1", "/_fake/log"), timeout=2) as response:
            assert json.loads(response.read())["request_count"] == 1
    finally:
        process.kill()
        process.wait(timeout=5)
        process.stdout.close()


def test_server_process_plays_every_role_and_counts_requests():
    import json as _json

    import openai

    from collabrl.testing.fake_server_process import FakeServerProcess

    with FakeServerProcess(roleplay=True) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        sim = client.chat.completions.create(
            model="m",
            messages=[
                {"role": "system", "content": "<<<REQUEST\nhidden\nREQUEST>>>"},
                {"role": "user", "content": "start"},
            ],
        )
        assert _json.loads(sim.choices[0].message.content)["terminate"] is False
        judge = client.chat.completions.create(
            model="m",
            messages=[
                {
                    "role": "user",
                    "content": "This request's id is 0a1b2c3d4e5f.\nrate it\n"
                    "GRADE 0a1b2c3d4e5f: <3|2|1>",
                }
            ],
        )
        assert judge.choices[0].message.content.endswith("GRADE 0a1b2c3d4e5f: 3")
        assert server.request_count == 2
    assert server.process.poll() is not None
