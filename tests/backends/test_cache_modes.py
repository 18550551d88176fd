"""cache.mode through the backend stack: replay sends nothing and needs no key, server or local
model; record refreshes; off leaves the file alone; how cache.enabled relates to cache.mode."""

from __future__ import annotations

import shutil

import pytest

from collabrl.backends.cache import ResponseCache, request_key, sample_key
from collabrl.backends.errors import ReplayMissError
from collabrl.backends.stack import Roles, UnloadedLocalModel
from collabrl.cli import main
from collabrl.config import ConfigError, HFLocalBackendConfig, load_config
from collabrl.types import Completion, GenerationParams, Message

UNSET_KEY = "COLLABRL_TEST_REPLAY_UNSET_KEY"
PARAMS = GenerationParams(n=2, temperature=1.0)


def ask(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def numbered(request, index: int) -> str:
    """A new answer for every request the server gets: a re-asked request would show."""
    return f"answer {request.seq}.{index}"


def policy_config(cache: str, mode: str, role: str):
    return load_config(None, [f"roles.policy={role}", f"cache.path={cache}", f"cache.mode={mode}"])


def openai_role(base_url: str) -> str:
    return f"{{kind: openai, model: m, base_url: '{base_url}', api_key_env: {UNSET_KEY}}}"


async def answers(config, *texts: str) -> list[list[str]]:
    async with Roles(config) as roles:
        return [[c.text for c in await roles["policy"].generate(ask(t), PARAMS)] for t in texts]


def store(path, identity: dict[str, str], text: str) -> None:
    """A recording of ``text`` asked with PARAMS: answers 'kept 0' and 'kept 1'."""
    cache = ResponseCache(path)
    request = request_key(identity, ask(text), PARAMS)
    for index in range(PARAMS.n):
        cache.put(
            sample_key(request, index), Completion(text=f"kept {index}", finish_reason="stop")
        )
    cache.close()


async def test_record_then_replay_elsewhere_sends_no_request(fake, tmp_path, monkeypatch):
    monkeypatch.delenv(UNSET_KEY, raising=False)
    server = fake(reply_fn=numbered)
    role = openai_role(server.base_url)
    recorded = await answers(policy_config(tmp_path / "a/c.sqlite", "record", role), "x", "y")
    sent = server.request_count
    (tmp_path / "b").mkdir()
    shutil.copyfile(tmp_path / "a/c.sqlite", tmp_path / "b/c.sqlite")  # the file alone
    replay = policy_config(tmp_path / "b/c.sqlite", "replay", role)
    assert await answers(replay, "x", "y") == recorded
    with pytest.raises(
        ReplayMissError,
        match="role 'policy', kind openai, model m, base_url "
        f"{server.base_url}, sample 0, last message \\(user\\) 'z'",
    ):
        await answers(replay, "z")
    assert server.request_count == sent == 2


async def test_record_asks_again_what_readwrite_serves(fake, tmp_path):
    server = fake(reply_fn=numbered)
    role = openai_role(server.base_url)
    first = await answers(policy_config(tmp_path / "c.sqlite", "readwrite", role), "x")
    assert await answers(policy_config(tmp_path / "c.sqlite", "readwrite", role), "x") == first
    fresh = await answers(policy_config(tmp_path / "c.sqlite", "record", role), "x")
    assert fresh != first and server.request_count == 2
    assert await answers(policy_config(tmp_path / "c.sqlite", "replay", role), "x") == fresh


async def test_replay_of_a_hosted_model_needs_no_key_and_no_network(tmp_path, monkeypatch):
    monkeypatch.delenv(UNSET_KEY, raising=False)
    url = "https://api.example.invalid/v1"
    store(tmp_path / "c.sqlite", {"kind": "openai", "model": "m", "base_url": url}, "x")
    replay = policy_config(tmp_path / "c.sqlite", "replay", openai_role(url))
    assert await answers(replay, "x") == [["kept 0", "kept 1"]]
    with pytest.raises(ReplayMissError, match="model m, base_url https://api.example.invalid"):
        await answers(replay, "y")  # not a missing-key error: nothing is about to be sent


async def test_replay_never_loads_a_local_model(tmp_path):
    elsewhere = "/elsewhere/models/qwen"  # an absolute path on the machine that recorded
    store(tmp_path / "c.sqlite", {"kind": "hf_local", "model": elsewhere}, "x")
    role = f"{{kind: hf_local, model: {elsewhere}}}"
    assert await answers(policy_config(tmp_path / "c.sqlite", "replay", role), "x") == [
        ["kept 0", "kept 1"]
    ]
    with_adapter = f"{{kind: hf_local, model: {elsewhere}, adapter: {tmp_path / 'gone'}}}"
    with pytest.raises(ConfigError, match="roles.policy.adapter: replay needs the folder"):
        await answers(policy_config(tmp_path / "c.sqlite", "replay", with_adapter), "x")


async def test_an_unloaded_local_model_has_the_loaded_models_identity(tmp_path):
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model

    from collabrl.backends.hf_local import HFLocalBackend
    from collabrl.testing.tiny_model import save_tiny_chat_model, tiny_chat_model

    base = save_tiny_chat_model(tmp_path / "tiny")
    lora = get_peft_model(tiny_chat_model(seed=0)[0], LoraConfig(r=4, target_modules=["q_proj"]))
    lora.save_pretrained(tmp_path / "adapter")
    for adapter in (None, tmp_path / "adapter"):
        cfg = HFLocalBackendConfig(
            kind="hf_local", model=str(base), adapter=adapter, dtype="float32", device="cpu"
        )
        loaded = HFLocalBackend.from_config(cfg)
        assert UnloadedLocalModel(cfg, "policy").identity() == loaded.identity()
        await loaded.aclose()


def test_the_cli_replays_a_recording_from_a_read_only_folder(workdir, read_only_folder, capsys):
    recording = workdir / "shared" / "recording.sqlite"
    run = ["generate", "--config", "configs/scripted.yaml", f"cache.path={recording}"]
    run.append("generate.conversations_in_flight=1")
    assert main([*run, "cache.mode=record", "generate.output_dir=runs/recorded"]) == 0
    contents = read_only_folder(recording)
    before = contents()
    assert main([*run, "cache.mode=replay", "generate.output_dir=runs/replayed"]) == 0
    assert contents() == before and sorted(before[1]) == ["recording.sqlite"]
    recorded, replayed = (
        (workdir / f"runs/{name}/conversations.jsonl").read_bytes()
        for name in ("recorded", "replayed")
    )
    assert replayed == recorded and recorded.count(b"\n") == 3
    capsys.readouterr()
    assert main([*run, "cache.mode=replay", "cache.path=gone.sqlite"]) == 2
    assert "error: cache.path: gone.sqlite is not a file: replay needs" in capsys.readouterr().out
    assert not (workdir / "gone.sqlite").exists()


@pytest.mark.parametrize("off", ["cache.mode=off", "cache.enabled=false"])
async def test_off_never_touches_the_file(tmp_path, off):
    existing = tmp_path / "kept.sqlite"
    store(existing, {"kind": "scripted", "model": "scripted"}, "x")
    before = (existing.read_bytes(), existing.stat().st_mtime_ns)
    for path in (existing, tmp_path / "absent.sqlite"):
        config = load_config(None, ["roles.policy={kind: scripted}", f"cache.path={path}", off])
        assert await answers(config, "x") == [["OK.", "OK."]]  # not the stored 'kept'
    assert (existing.read_bytes(), existing.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.sqlite"]


def test_enabled_false_means_mode_off_and_contradictions_are_refused(tmp_path):
    assert load_config(None, ["cache.enabled=false"]).cache.mode == "off"
    assert load_config(None, ["cache.mode=off"]).cache.enabled is False  # YAML's bare off
    assert load_config(None, ["cache.mode=replay"]).cache.enabled is True
    for overrides in (
        ["cache.enabled=false", "cache.mode=replay"],
        ["cache.enabled=true", "cache.mode=off"],
    ):
        with pytest.raises(ConfigError, match="cache.enabled: .* contradicts cache.mode: "):
            load_config(None, overrides)
