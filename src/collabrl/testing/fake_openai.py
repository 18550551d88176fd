"""A real OpenAI- and Anthropic-compatible HTTP server on loopback, for tests and benchmarks.

Why a real server: what breaks LLM backends in practice happens on the wire (keep-alive
connections, timeouts, resets, bodies cut short, 429s with Retry-After), and mocked SDK calls
hide all of it. This server speaks HTTP/1.1 over a real socket, so the official ``openai`` and
``anthropic`` clients run their full code path against it. Standard library only.

Endpoints: ``POST /v1/chat/completions`` (OpenAI, honours ``n`` unless ``ignore_n``),
``POST /v1/messages`` (Anthropic Messages), both streamed as server-sent events when the body
has ``"stream": true`` (see ``collabrl.testing.fake_sse``), ``GET /v1/models``, and ``GET /_fake/log`` (the
request log as JSON, for a server running in another process).

Replies are deterministic: by default a function of (last user message, sample index,
temperature, seed), so samples differ when temperature > 0 and repeat exactly otherwise. Word
counts stand in for tokens (``max_tokens`` cuts the reply with finish reason ``length``).

Faults are injected with a ``script``: a list of per-request behaviours used in order by the
generation requests (then normal replies), or a callable ``script(request) -> behaviour | None``.
A behaviour is a :class:`Behaviour`, an HTTP status (``500``), or ``"ok"``, ``"reset"``, ``"cut"``,
``"hang"``::

    with FakeOpenAIServer(script=[Behaviour.rate_limited(2), 503, "reset"]) as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="k")   # Anthropic: server.url
        ...
        assert server.request_count == 4

As a separate process (prints its base URL on the first stdout line)::

    python -m collabrl.testing.fake_openai --port 0 --latency 0.2 --script '[500, "reset"]'
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from collabrl.testing import fake_sse
from collabrl.testing.roleplay import fake_server_reply

AUTO = "auto"  # Behaviour.finish_reason default: computed from the reply (stop / length)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, in arrival order (``seq`` from 0)."""

    seq: int
    method: str
    path: str
    body: dict[str, Any] | None
    headers: dict[str, str]
    time: float  # time.time() at arrival

    @property
    def api_key(self) -> str | None:
        """The key the client sent (``Authorization: Bearer`` or ``x-api-key``)."""
        lowered = {k.lower(): v for k, v in self.headers.items()}
        auth = lowered.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:]
        return lowered.get("x-api-key")

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.body or {}).get("messages") or [])

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""


# A reply hook: (request, sample index) -> reply text.
ReplyFn = Callable[[RecordedRequest, int], str]


@dataclass(frozen=True)
class Behaviour:
    """What the server does with one request. The default is a normal reply.

    status / error_*: answer with this HTTP error (``{api_key}`` in ``error_message`` is
        replaced by the key the client sent, to test that errors are redacted).
    headers: extra response headers (``Retry-After``, ...).
    hang_s: wait this long (or until the server closes), then close without a response.
    reset: close the connection at once (TCP reset), no response.
    cut: send the headers and half of the body, then close.
    text / reply: the reply text, or a callable computing it from (request, sample index).
    finish_reason: sent verbatim (``None`` sends null); ``AUTO`` computes stop/length.
    refusal: reply with a refusal carrying this text.
    """

    status: int = 200
    error_message: str = "fake error"
    error_code: str | None = None
    error_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    hang_s: float | None = None
    reset: bool = False
    cut: bool = False
    text: str | None = None
    reply: ReplyFn | None = None
    finish_reason: str | None = AUTO
    refusal: str | None = None

    @classmethod
    def error(
        cls,
        status: int,
        message: str = "fake error",
        *,
        code: str | None = None,
        type: str | None = None,  # the field's name in both APIs
        headers: Mapping[str, str] | None = None,
    ) -> Behaviour:
        return cls(
            status=status,
            error_message=message,
            error_code=code,
            error_type=type,
            headers=dict(headers or {}),
        )

    @classmethod
    def rate_limited(
        cls, retry_after: float | str | None = None, *, retry_after_ms: float | None = None
    ) -> Behaviour:
        """A 429; ``retry_after`` in seconds or as an HTTP date."""
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        return cls.error(
            429,
            "Rate limit reached, slow down",
            code="rate_limit_exceeded",
            type="rate_limit_error",
            headers=headers,
        )

    @classmethod
    def quota_exceeded(cls) -> Behaviour:
        return cls.error(
            429,
            "You exceeded your current quota, check your plan and billing.",
            code="insufficient_quota",
            type="insufficient_quota",
        )

    @classmethod
    def hang(cls, seconds: float = 60.0) -> Behaviour:
        return cls(hang_s=seconds)


ScriptItem = Behaviour | int | str
Script = Sequence[ScriptItem] | Callable[[RecordedRequest], ScriptItem | None] | None

_SHORTHANDS = {
    "ok": Behaviour(),
    "reset": Behaviour(reset=True),
    "cut": Behaviour(cut=True),
    "hang": Behaviour.hang(),
}


def as_behaviour(item: ScriptItem | None) -> Behaviour:
    """A script item as a Behaviour: a Behaviour, an HTTP status, or a shorthand name."""
    if item is None:
        return Behaviour()
    if isinstance(item, Behaviour):
        return item
    if isinstance(item, int):
        return Behaviour() if item == 200 else Behaviour.error(item, f"fake HTTP {item}")
    if item in _SHORTHANDS:
        return _SHORTHANDS[item]
    raise ValueError(
        f"unknown script item {item!r}: use a Behaviour, a status or {list(_SHORTHANDS)}"
    )


def default_reply(last_user: str, index: int, temperature: float, seed: int | None) -> str:
    """The reply when nothing else is scripted: identical draws at temperature 0."""
    snippet = " ".join(last_user.split()[:12])
    if temperature == 0:
        return f"Fake reply to: {snippet}"
    digest = hashlib.sha256(f"{last_user}|{index}|{temperature}|{seed}".encode()).hexdigest()[:8]
    return f"Fake reply {digest} to: {snippet}"


def _text_of(content: Any) -> str:
    """Message content as text: a string, or a list of content blocks with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def _count_words(body: dict[str, Any]) -> int:
    texts = [_text_of(m.get("content")) for m in body.get("messages") or []]
    texts.append(_text_of(body.get("system")))
    return sum(len(t.split()) for t in texts)


class FakeOpenAIServer:
    """A threaded HTTP/1.1 server on 127.0.0.1; a context manager (or ``start``/``close``).

    ``base_url`` (ends in ``/v1``) is for OpenAI clients, ``url`` (the root) for Anthropic ones.
    Options: ``script`` (faults, see the module doc), ``reply_fn(request, index) -> str`` (reply
    text by content), ``latency`` (seconds added to each generation request), ``ignore_n`` (one
    choice per request, like llama.cpp), ``model`` (listed by /v1/models), ``port`` (0: any).
    """

    def __init__(
        self,
        *,
        script: Script = None,
        reply_fn: ReplyFn | None = None,
        latency: float = 0.0,
        ignore_n: bool = False,
        model: str = "fake-model",
        port: int = 0,
    ) -> None:
        self.script = script
        self.reply_fn = reply_fn
        self.latency = latency
        self.ignore_n = ignore_n
        self.model = model
        self._port = port
        self._lock = threading.RLock()  # a callable script may read the log
        self._requests: list[RecordedRequest] = []
        self._script_pos = 0
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        self._httpd = _HTTPServer(("127.0.0.1", self._port), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="fake-openai-server",
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; hung and waiting requests are released, open connections shut."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake server is not running; use start() or `with`")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # -- the request log -------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    def _record(
        self, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[RecordedRequest, Behaviour]:
        """Log a request and pick its behaviour, atomically (arrival order = script order)."""
        with self._lock:
            request = RecordedRequest(len(self._requests), method, path, body, headers, time.time())
            self._requests.append(request)
            if method != "POST":
                return request, Behaviour()
            if callable(self.script):
                return request, as_behaviour(self.script(request))
            script = self.script or ()
            item = script[self._script_pos] if self._script_pos < len(script) else None
            self._script_pos += 1
            return request, as_behaviour(item)

    def _wait(self, seconds: float) -> None:
        """Sleep that ends early when the server closes."""
        if seconds > 0:
            self._stopping.wait(seconds)

    # -- replies ---------------------------------------------------------------------------
    def _texts(self, request: RecordedRequest, behaviour: Behaviour, count: int) -> list[str]:
        body = request.body or {}
        texts = []
        for i in range(count):
            if behaviour.text is not None:
                texts.append(behaviour.text)
            elif behaviour.reply is not None:
                texts.append(behaviour.reply(request, i))
            elif self.reply_fn is not None:
                texts.append(self.reply_fn(request, i))
            else:
                texts.append(
                    default_reply(
                        request.last_user_text,
                        i,
                        float(body.get("temperature", 1.0)),
                        body.get("seed"),
                    )
                )
        return texts

    def _respond(self, request: RecordedRequest, behaviour: Behaviour) -> tuple[int, Any]:
        """(HTTP status, JSON payload) for a generation request."""
        if not isinstance(request.body, dict):
            return 400, {"error": {"message": "request body is not a JSON object"}}
        if behaviour.status >= 400:
            return behaviour.status, self._error_body(request, behaviour)
        if request.path == "/v1/chat/completions":
            return 200, self._chat_completion(request, behaviour)
        if request.path == "/v1/messages":
            return 200, self._anthropic_message(request, behaviour)
        return 404, {"error": {"message": f"no route POST {request.path}"}}

    def _chat_completion(self, request: RecordedRequest, behaviour: Behaviour) -> dict[str, Any]:
        """An OpenAI ``chat.completion`` object."""
        body = request.body or {}
        count = 1 if self.ignore_n else int(body.get("n") or 1)
        choices, completion_tokens = [], 0
        for i, text in enumerate(self._texts(request, behaviour, count)):
            text, finish = _limit(
                text, body.get("max_tokens") or body.get("max_completion_tokens"), body.get("stop")
            )
            completion_tokens += len(text.split())
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            if behaviour.refusal is not None:
                message.update(content=None, refusal=behaviour.refusal)
            finish = "length" if finish == "length" else "stop"
            reason = finish if behaviour.finish_reason == AUTO else behaviour.finish_reason
            choices.append(
                {"index": i, "message": message, "finish_reason": reason, "logprobs": None}
            )
        prompt_tokens = _count_words(body)
        return {
            "id": f"chatcmpl-fake-{request.seq}",
            "object": "chat.completion",
            "created": int(request.time),
            "model": body.get("model", self.model),
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _anthropic_message(self, request: RecordedRequest, behaviour: Behaviour) -> dict[str, Any]:
        """An Anthropic Messages ``message`` object (one sample; the API has no ``n``)."""
        body = request.body or {}
        text = self._texts(request, behaviour, 1)[0]
        text, finish = _limit(text, body.get("max_tokens"), body.get("stop_sequences"))
        reason = {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence"}[
            finish
        ]
        if behaviour.refusal is not None:
            text, reason = behaviour.refusal, "refusal"
        if behaviour.finish_reason != AUTO:
            reason = behaviour.finish_reason
        return {
            "id": f"msg_fake_{request.seq}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", self.model),
            "content": [{"type": "text", "text": text}],
            "stop_reason": reason,
            "stop_sequence": None,
            "usage": {"input_tokens": _count_words(body), "output_tokens": len(text.split())},
        }

    def _error_body(self, request: RecordedRequest, behaviour: Behaviour) -> dict[str, Any]:
        message = behaviour.error_message.replace("{api_key}", request.api_key or "")
        if request.path.endswith("/messages"):
            return {
                "type": "error",
                "error": {"type": behaviour.error_type or "api_error", "message": message},
            }
        return {
            "error": {
                "message": message,
                "type": behaviour.error_type or "server_error",
                "param": None,
                "code": behaviour.error_code,
            }
        }


def _limit(text: str, max_tokens: Any, stop: Any) -> tuple[str, str]:
    """Apply stop sequences, then ``max_tokens`` (in words); the finish: stop, stop_sequence, length."""
    finish = "stop"
    for sequence in [stop] if isinstance(stop, str) else (stop or []):
        if sequence and sequence in text:
            text, finish = text[: text.index(sequence)], "stop_sequence"
    words = text.split()
    if max_tokens is not None and len(words) > int(max_tokens):
        return " ".join(words[: int(max_tokens)]), "length"
    return text, finish


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # hung handlers must not block close()
    request_queue_size = 1024  # benchmarks open hundreds of connections at once
    fake: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away (timeout, kill -9): expected in fault tests
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real API servers
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between headers and body
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.fake._lock:
            self.server.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.fake._lock:
            self.server.fake._connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests make thousands of requests."""

    def do_GET(self) -> None:
        fake = self.server.fake
        if self.path == "/_fake/log":
            log = [asdict(r) for r in fake.requests]
            self._send_json(200, {"request_count": len(log), "requests": log})
            return
        fake._record("GET", self.path, None, dict(self.headers))
        if self.path.rstrip("/") == "/v1/models":
            model = {"id": fake.model, "object": "model", "created": 0, "owned_by": "fake"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_json(404, {"error": {"message": f"no route GET {self.path}"}})

    def do_POST(self) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = None
        request, behaviour = fake._record("POST", self.path, body, dict(self.headers))
        fake._wait(fake.latency)
        if behaviour.reset:
            self._reset()
        elif behaviour.hang_s is not None:
            fake._wait(behaviour.hang_s)
            self.close_connection = True
        else:
            status, payload = fake._respond(request, behaviour)
            if status == 200 and isinstance(body, dict) and body.get("stream"):
                self._send_events(payload, cut=behaviour.cut)
            else:
                self._send_json(status, payload, behaviour.headers, cut=behaviour.cut)

    def _send_events(self, payload: dict[str, Any], *, cut: bool) -> None:
        """The reply as server-sent events; the connection closes after them (or half of them)."""
        streamed = (
            fake_sse.anthropic_events
            if payload.get("type") == "message"
            else fake_sse.openai_events
        )
        events = streamed(payload)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in events[: len(events) // 2] if cut else events:
            self.wfile.write(fake_sse.encode(event))
            self.wfile.flush()
        self.close_connection = True

    def _send_json(
        self,
        status: int,
        payload: Any,
        headers: Mapping[str, str] | None = None,
        *,
        cut: bool = False,
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if cut:
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
        else:
            self.wfile.write(data)

    def _reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0) and no response."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()
        self.close_connection = True


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake OpenAI/Anthropic server.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--ignore-n", action="store_true", help="one choice per request")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--script", default="[]", help='JSON list, e.g. \'[429, "reset", "ok"]\'')
    parser.add_argument(
        "--roleplay",
        action="store_true",
        help="answer collabrl's prompts in role (see collabrl.testing.roleplay)",
    )
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(
        script=json.loads(args.script),
        reply_fn=fake_server_reply if args.roleplay else None,
        latency=args.latency,
        ignore_n=args.ignore_n,
        model=args.model,
        port=args.port,
    )
    with server:
        print(server.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
