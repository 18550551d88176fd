"""How model-written code ran is on record: the run manifest holds the sandbox's level and
whether weak isolation was opted into (tests/report/test_data.py: the report shows it)."""

from collabrl.config import Config, MetricSpec
from collabrl.sandbox import sandbox_record
from collabrl.types import Task

CODE = Task(id="c", description="code", intent="write f", artifact="code", reference="assert 1")
MATH = Task(id="m", description="math", intent="2+2", artifact="answer", reference="4")


async def test_no_record_when_no_code_runs():
    config = Config()
    assert await sandbox_record(config, [MetricSpec(name="accuracy")], [CODE]) is None
    assert await sandbox_record(config, [MetricSpec(name="pass_rate")], [MATH]) is None


async def test_a_weak_level_opted_into_is_recorded_as_weak():
    config = Config.model_validate({"sandbox": {"allow_weak_isolation": True}})
    spec = MetricSpec(name="pass_rate", options={"isolation": "process"})
    record = await sandbox_record(config, [spec], [CODE])
    assert record["level"] == "process" and record["weak_isolation"] is True
    assert record["allow_weak_isolation"] is True and record["weaknesses"]
    refused = await sandbox_record(Config(), [spec], [CODE])  # the same level, no opt-in
    assert refused["level"] is None and "allow_weak_isolation" in refused["refused"]
