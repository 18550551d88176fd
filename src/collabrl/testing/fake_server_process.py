"""The fake OpenAI server in its own process, for benchmarks and crash tests.

In-process, the server's threads share the interpreter lock with the client under test, so a
benchmark would measure the two fighting over one core; and a crash test that kills the client
must not kill the server that counts its requests. ``FakeServerProcess`` runs
``python -m collabrl.testing.fake_openai`` and reads the request log over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any


class FakeServerProcess:
    """``with FakeServerProcess(latency=0.2, roleplay=True) as server: server.base_url``."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        roleplay: bool = False,
        script: list | None = None,
        ignore_n: bool = False,
    ) -> None:
        self.args = [
            sys.executable,
            "-m",
            "collabrl.testing.fake_openai",
            "--port",
            "0",
            "--latency",
            str(latency),
            "--script",
            json.dumps(script or []),
        ]
        self.args += ["--roleplay"] if roleplay else []
        self.args += ["--ignore-n"] if ignore_n else []
        self.process: subprocess.Popen | None = None
        self.base_url = ""

    def __enter__(self) -> FakeServerProcess:
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().strip()
        if not line.startswith("http"):
            self.close()
            raise RuntimeError(f"fake server did not start (printed {line!r})")
        self.base_url = line
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def log(self) -> dict[str, Any]:
        url = self.base_url.removesuffix("/v1") + "/_fake/log"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.log()["requests"]

    @property
    def request_count(self) -> int:
        return self.log()["request_count"]
