"""Configuration: pydantic models for every setting, loaded from YAML plus dotted CLI overrides.

One model drives both the YAML files in ``configs/`` and the ``key=value`` overrides of the CLI,
so every setting is validated in one place and an error names the field it is about
(``roles.user.max_concurrency: Input should be greater than 0``). Roles (``policy``, ``user``,
``judge``, ...) are bound to backends here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from collabrl.types import GenerationParams

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and field."""


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


class RetryConfig(StrictModel):
    """How failed calls are retried. Non-retryable errors (400/401/403/404, quota) never are."""

    max_attempts: int = Field(default=6, ge=1, description="attempts per call, first included")
    initial_backoff_s: float = Field(default=1.0, ge=0, description="first backoff before jitter")
    max_backoff_s: float = Field(default=60.0, ge=0, description="cap on one backoff wait")
    jitter: float = Field(default=0.25, ge=0, le=1, description="random +- share of each wait")
    attempt_timeout_s: float = Field(default=120.0, gt=0, description="limit for one attempt")
    deadline_s: float = Field(default=900.0, gt=0, description="limit for all attempts and waits")


class PriceConfig(StrictModel):
    """Prices in currency units per million tokens, for the cost column of usage tables."""

    input_per_mtok: float = Field(ge=0, description="price of a million input (prompt) tokens")
    output_per_mtok: float = Field(
        ge=0, description="price of a million output (completion) tokens"
    )

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The price of that many prompt and completion tokens."""
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


class _BackendConfig(StrictModel):
    max_concurrency: int = Field(default=16, ge=1, description="calls in flight at once")
    requests_per_minute: float | None = Field(
        default=None, gt=0, description="optional start-rate cap"
    )
    retry: RetryConfig = RetryConfig()
    price: PriceConfig | None = None
    generation: GenerationParams = Field(
        default_factory=GenerationParams, description="the defaults for this role's calls"
    )


class OpenAIBackendConfig(_BackendConfig):
    """Any OpenAI-compatible endpoint: OpenAI, vLLM, SGLang, Ollama, llama.cpp server, TGI."""

    kind: Literal["openai"]
    model: str = Field(description="model name as the server knows it")
    base_url: str | None = Field(default=None, description="None means api.openai.com")
    api_key_env: str = Field(
        default="OPENAI_API_KEY", description="NAME of the environment variable with the key"
    )
    extra_body: dict[str, Any] = Field(default_factory=dict, description="sent with each request")


class AnthropicBackendConfig(_BackendConfig):
    """Anthropic's Messages API through the official SDK (extra ``anthropic``)."""

    kind: Literal["anthropic"]
    model: str = Field(description="model name, e.g. claude-haiku-4-5")
    base_url: str | None = Field(default=None, description="None means the Anthropic API")
    api_key_env: str = Field(
        default="ANTHROPIC_API_KEY", description="NAME of the environment variable with the key"
    )


class HFLocalBackendConfig(_BackendConfig):
    """A local transformers model; concurrent calls are batched into one ``model.generate``."""

    kind: Literal["hf_local"]
    model: str = Field(description="a local folder, a hub id, or 'smollm2-135m-instruct'")
    # A call waits in the batch queue behind others, and a timed-out attempt would be computed
    # again from scratch: long limits, and no retry for what fails the same way twice.
    retry: RetryConfig = RetryConfig(max_attempts=2, attempt_timeout_s=3600.0, deadline_s=7200.0)
    adapter: Path | None = Field(
        default=None, description="a LoRA adapter folder (e.g. runs/train/final) merged into model"
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default="auto", description="dtype of the weights"
    )
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    max_batch_size: int = Field(default=16, ge=1, description="most requests in one generate")
    max_wait_ms: float = Field(default=20.0, ge=0, description="wait to fill a batch")
    trust_remote_code: bool = Field(
        default=False, description="run code shipped with the model (transformers)"
    )


class ScriptedRule(StrictModel):
    contains: str = Field(description="reply when the last message contains this text")
    reply: str = Field(description="the reply")
    request_contains: str | None = Field(
        default=None,
        description="and, when set, some message of the request (the system prompt included) "
        "contains this text: e.g. a word of the task's intent, for replies per task",
    )


class ScriptedBackendConfig(_BackendConfig):
    """Deterministic replies: the first matching rule, else the ``replies`` in turn."""

    kind: Literal["scripted"]
    rules: list[ScriptedRule] = Field(
        default_factory=list, description="tried in order; the first match replies"
    )
    replies: list[str] = Field(
        default_factory=lambda: ["OK."], description="used in turn when no rule matches"
    )


BackendConfig = Annotated[
    OpenAIBackendConfig | AnthropicBackendConfig | HFLocalBackendConfig | ScriptedBackendConfig,
    Field(discriminator="kind"),
]


_BACKEND_KINDS = ("openai", "anthropic", "hf_local", "scripted")


class CacheConfig(StrictModel):
    mode: Literal["readwrite", "record", "replay", "off"] = Field(
        default="readwrite",
        description="readwrite: answer repeated requests from the file, store new answers; "
        "record: ask the model (once per request in this run) and store, overwriting, never "
        "serving older answers; replay: answer only from the file, a request it lacks fails "
        "(replay_miss) and nothing is sent; off: the file is not opened",
    )
    enabled: bool = Field(
        default=True, description="false is the same as mode: off (older configs); set mode instead"
    )
    path: Path = Field(default=Path(".collabrl/cache.sqlite"), description="the SQLite file")

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML reads a bare ``off`` as false

    @model_validator(mode="after")
    def _enabled_matches_mode(self) -> CacheConfig:
        """``enabled: false`` means ``mode: off``; both set and disagreeing is an error."""
        both = {"enabled", "mode"} <= self.model_fields_set
        if both and self.enabled != (self.mode != "off"):
            raise ValueError(
                f"cache.enabled: {str(self.enabled).lower()} contradicts "
                f"cache.mode: {self.mode}; drop cache.enabled (mode: off disables)"
            )
        if not self.enabled:
            self.mode = "off"
        self.enabled = self.mode != "off"
        return self


class SimulatorConfig(StrictModel):
    """The simulated user."""

    kind: str = Field(
        default="llm",
        description="llm: a model (roles.<role>) plays the user; rule: the rule-based user of "
        "collabrl.rule_user (no model; tasks with opening/detail metadata); or user code as "
        "module:attribute / an installed collabrl.users entry point, called (config, roles)",
    )
    role: str = Field(default="user", description="role whose backend plays the user (kind llm)")
    reply_format: Literal["json", "plain"] = Field(
        default="json",
        description="json: {thought, message, terminate} (capable models); plain: the message "
        "text, [END] to stop (small local models that cannot keep to JSON)",
    )
    max_reasks: int = Field(default=2, ge=0, description="re-asks after an unparsable reply")
    cut_messages: Literal["reask", "trim"] = Field(
        default="reask",
        description="a message cut by the length limit: reask (shorter) or, with the plain "
        "format, trim to its last whole sentence (flagged trimmed_after_cut)",
    )
    leak_words: int = Field(default=12, ge=1, description="shared words that flag intent leakage")
    personas: str | None = Field(
        default=None,
        description="who the user is, one persona per conversation picked from (task, seed): "
        "'default' (the shipped set), a YAML/JSONL persona file, or null (no persona); kind llm "
        "plays it, other kinds ignore it, records name it either way",
    )


class AssistantConfig(StrictModel):
    """The assistant being simulated or trained."""

    role: str = Field(default="policy", description="role whose backend writes assistant turns")
    system_prompt: str | None = Field(default=None, description="sent before every conversation")


class MetricSpec(StrictModel):
    """One metric of the reward: its name, weight in R*, and metric-specific options."""

    name: str = Field(description="a metric name (see Metric options)")
    weight: float = Field(default=1.0, description="its weight in R*")
    options: dict[str, Any] = Field(
        default_factory=dict, description="metric-specific options (see Metric options)"
    )


def _paper_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(name="interactivity", weight=1.0),
        MetricSpec(name="token_efficiency", weight=1.0, options={"form": "penalty", "lam": 5e-4}),
    ]


class RewardConfig(StrictModel):
    """The multiturn-aware reward: S futures of w turn pairs, scored by weighted metrics."""

    samples: int = Field(default=3, ge=1, description="S: futures sampled per candidate")
    window: int = Field(default=2, ge=0, description="w: turn pairs (user, assistant) per future")
    future_assistant_role: str = Field(
        default="policy", description="role that writes assistant turns inside futures"
    )
    metrics: list[MetricSpec] = Field(
        default_factory=_paper_metrics, description="R* is their weighted sum (the paper's)"
    )
    cut_futures: Literal["unscored", "scored"] = Field(
        default="unscored",
        description="a future with an assistant reply cut by the length limit: left out of MR "
        "(unscored) or scored as it is",
    )
    adaptive: Literal["off", "pairs", "estimate"] = Field(
        default="off",
        description="adaptive forward sampling (racing, collabrl.adaptive): off: S futures each; "
        "pairs: stop once best, worst and the export's min_gap are settled (DPO pairs); "
        "estimate: stop once MR's standard error <= target_stderr (GRPO/PPO)",
    )
    samples_min: int = Field(
        default=2, ge=1, description="adaptive: futures per round, first included"
    )
    samples_max: int | None = Field(
        default=None, ge=1, description="adaptive: most futures per candidate (null: samples)"
    )
    confidence: float = Field(
        default=0.95, gt=0, lt=1, description="adaptive: joint confidence of the race's intervals"
    )
    reward_range: tuple[float, float] | None = Field(
        default=None,
        description="adaptive: [low, high] of one future's R* (sum of weight x metric range); "
        "required when adaptive is on",
    )
    target_stderr: float = Field(
        default=0.05, gt=0, description="adaptive=estimate: stop at this standard error of MR"
    )

    @field_validator("adaptive", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML reads a bare `off` as false

    @model_validator(mode="after")
    def _adaptive_settings(self) -> RewardConfig:
        if self.adaptive == "off":
            return self
        if self.reward_range is None:
            raise ValueError("adaptive sampling needs reward.reward_range: [low, high] of R*")
        if not self.reward_range[0] < self.reward_range[1]:
            raise ValueError("reward.reward_range must be [low, high] with low < high")
        if self.samples_min > (self.samples_max or self.samples):
            raise ValueError("reward.samples_min must be <= samples_max (or samples)")
        return self


class TaskSource(StrictModel):
    """Where tasks come from: a named set (``collabrl tasks list``) or a JSONL task file."""

    set: str | None = Field(default=None, description="a named task set, e.g. math-chat")
    path: Path | None = Field(
        default=None, description="a JSONL task file; with `set`, a local copy of the set's data"
    )
    split: Literal["train", "test"] | None = Field(default=None, description="a split of the set")
    limit: int | None = Field(default=None, ge=1, description="only the first N tasks")

    @model_validator(mode="after")
    def _named_or_file(self) -> TaskSource:
        if self.set is None and self.path is None:
            raise ValueError("give a task set name (set) or a task file (path)")
        if self.set is None and self.split is not None:
            raise ValueError("split applies to a named task set (set)")
        return self


TaskSources = TaskSource | list[TaskSource]
"""One source, or several whose tasks are used one set after the other (ids must not clash)."""


class SimulateConfig(StrictModel):
    """``collabrl simulate``: whole conversations between the assistant and the user."""

    tasks: TaskSources | None = Field(default=None, description="the tasks to simulate")
    max_turns: int = Field(default=7, ge=1, description="assistant turns per conversation")
    output: Path = Field(
        default=Path("runs/simulate/conversations.jsonl"), description="one record per conversation"
    )


class GenerateConfig(StrictModel):
    """``collabrl generate``: the data engine that builds scored multi-turn conversations."""

    tasks: TaskSources | None = Field(default=None, description="the training tasks")
    candidates: int = Field(default=3, ge=1, description="k: replies sampled per assistant turn")
    proactive_share: float = Field(
        default=1 / 3,
        ge=0,
        le=1,
        description="share of candidates sampled with the proactive prompt",
    )
    max_turns: int = Field(default=7, ge=1, description="assistant turns per conversation")
    conversations_in_flight: int = Field(default=64, ge=1, description="conversations at once")
    keep_futures: bool = Field(default=True, description="store sampled futures in turn records")
    cut_candidates: Literal["skip", "scored", "trim"] = Field(
        default="skip",
        description="a candidate cut by the length limit is never chosen; skip: not scored "
        "(no futures spent on it); scored: scored, so it can be a DPO pair's rejected reply; "
        "trim: cut back to its last whole sentence and used like any reply (flagged trimmed)",
    )
    max_failure_rate: float = Field(
        default=0.2, ge=0, le=1, description="stop when this share of conversations failed"
    )
    min_conversations_for_failure_rate: int = Field(
        default=20, ge=1, description="conversations finished before max_failure_rate applies"
    )
    output_dir: Path = Field(
        default=Path("runs/generate"), description="turns.jsonl, conversations.jsonl, manifest.json"
    )


class ExportConfig(StrictModel):
    """``collabrl export``: DPO pairs and SFT rows from the data engine's output."""

    input_dir: Path = Field(default=Path("runs/generate"), description="a generate output_dir")
    output_dir: Path = Field(default=Path("runs/export"), description="DPO pairs and SFT rows")
    min_gap: float = Field(default=0.02, ge=0, description="keep pairs with MR gap >= this")
    eval_fraction: float = Field(
        default=0.1, ge=0, lt=1, description="share of conversations held out"
    )
    save_dataset: bool = Field(default=True, description="also write datasets.save_to_disk folders")
    push_to_hub: str | None = Field(default=None, description="optional hub repo id to push to")


class EvalSystem(StrictModel):
    """One system under test: a role's backend, with or without a system prompt."""

    name: str = Field(description="its name in tables; unique")
    role: str = Field(default="policy", description="the role whose backend answers")
    system_prompt: str | None = Field(default=None, description="sent before every conversation")
    proactive: bool = Field(default=False, description="use the proactive prompt (baseline)")


def _default_systems() -> list[EvalSystem]:
    return [EvalSystem(name="base"), EvalSystem(name="proactive", proactive=True)]


class EvalConfig(StrictModel):
    """``collabrl eval``: systems chat with the user simulator on held-out tasks."""

    tasks: TaskSources | None = Field(default=None, description="held-out tasks (split: test)")
    systems: list[EvalSystem] = Field(
        default_factory=_default_systems,
        description="the systems compared; the first is the reference for paired differences",
    )
    seeds: int = Field(default=3, ge=1, description="conversations per task and system")
    success_threshold: float = Field(
        default=1.0,
        description="pass^k: a conversation succeeds when its task score (0-1) is >= this "
        "(accuracy, pass rate: 1.0 = solved; BLEU needs a lower level)",
    )
    max_turns: int = Field(default=7, ge=1, description="assistant turns per conversation")
    task_metrics: list[MetricSpec] = Field(
        default_factory=lambda: [MetricSpec(name=n) for n in ("accuracy", "pass_rate", "bleu")],
        description="the first that applies to a task's artifact scores it (no weight: "
        "a weight other than 1 is refused)",
    )
    judge_role: str | None = Field(
        default="judge", description="role of the interactivity judge; null: no ITR grade"
    )
    conversations_in_flight: int = Field(default=64, ge=1, description="conversations at once")
    bootstrap_resamples: int = Field(
        default=2000, ge=100, description="resamples behind each bootstrap interval"
    )
    output_dir: Path = Field(
        default=Path("runs/eval"), description="records, summary.json and table.md"
    )

    @field_validator("task_metrics")
    @classmethod
    def _unweighted(cls, specs: list[MetricSpec]) -> list[MetricSpec]:
        default = MetricSpec.model_fields["weight"].default
        weighted = [s.name for s in specs if s.weight != default]
        if weighted:
            raise ValueError(
                f"{', '.join(weighted)}: eval ignores a task metric's weight (the first metric "
                f"that applies scores a task); remove the weight"
            )
        return specs

    @model_validator(mode="after")
    def _unique_names(self) -> EvalConfig:
        names = [s.name for s in self.systems]
        if len(names) != len(set(names)):
            raise ValueError(f"system names must be unique, got {names}")
        return self


class LoraSettings(StrictModel):
    """LoRA adapters (PEFT). The paper: r=32, alpha=16, dropout 0.1 (really applied here)."""

    r: int = Field(default=32, ge=1, description="rank of the adapters")
    alpha: int = Field(default=16, ge=1, description="scaling: updates times alpha / r")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="dropout on the adapter inputs")
    target_modules: list[str] | Literal["all-linear"] = Field(
        default="all-linear", description="module names that get adapters"
    )


class SFTSettings(StrictModel):
    data: Path = Field(default=Path("runs/export"), description="export output_dir (sft_*.jsonl)")
    learning_rate: float = Field(default=1e-5, description="peak learning rate")
    epochs: float = Field(default=3.0, description="passes over the data")


class DPOSettings(StrictModel):
    data: Path = Field(default=Path("runs/export"), description="export output_dir (dpo_*.jsonl)")
    learning_rate: float = Field(default=5e-6, description="peak learning rate")
    epochs: float = Field(default=8.0, description="passes over the data")
    beta: float = Field(default=0.1, gt=0, description="DPO beta: how far from the reference")
    max_prompt_length: int = Field(default=1536, ge=16, description="prompts keep their end")


def reject_renamed_key(data: Any, section: str, old: str, new: str) -> Any:
    """A config that still uses a renamed key fails naming the new one (not "extra field")."""
    if isinstance(data, dict) and old in data:
        raise ValueError(f"{section}.{old} was renamed to {section}.{new}")
    return data


class OnlineDPOSettings(StrictModel):
    prefixes: Path = Field(
        default=Path("runs/generate"), description="generate output_dir: prefixes to sample from"
    )
    init_adapter: Path | None = Field(
        default=None, description="start from this adapter (offline DPO)"
    )
    learning_rate: float = Field(default=5e-6, description="peak learning rate")
    rounds: int = Field(default=4, ge=1, description="sample, score, update: how many times")
    prefixes_per_round: int = Field(default=32, ge=1, description="prefixes sampled per round")
    candidates: int = Field(default=2, ge=2, description="k: fresh replies sampled per prefix")
    beta: float = Field(default=0.1, gt=0, description="DPO beta: how far from the reference")
    min_gap: float = Field(default=0.02, ge=0, description="keep pairs with MR gap >= this")
    temperature: float = Field(default=1.0, gt=0, le=2, description="sampling the fresh replies")
    max_completion_length: int = Field(default=512, ge=1, description="tokens per fresh reply")
    cut_replies: Literal["rejected_only", "as_complete"] = Field(
        default="rejected_only",
        description="a fresh reply cut by max_completion_length: rejected_only: never a pair's "
        "chosen reply, only its rejected one (the export's rule); as_complete: used like a "
        "finished reply, so it can be chosen (teaches ending there)",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_k(cls, data: Any) -> Any:
        return reject_renamed_key(data, "train.online_dpo", "samples_per_prefix", "candidates")


class GRPOSettings(StrictModel):
    prefixes: Path = Field(default=Path("runs/generate"), description="generate output_dir")
    learning_rate: float = Field(default=1e-6, description="peak learning rate")
    epochs: float = Field(default=1.0, description="passes over the prefixes")
    candidates: int = Field(default=4, ge=2, description="k: replies per prefix (the group)")
    beta: float = Field(default=0.04, ge=0, description="KL coefficient")
    loss_type: str = Field(default="grpo", description="grpo, dr_grpo, ... or rloo")
    temperature: float = Field(default=1.0, gt=0, le=2, description="sampling the completions")
    max_completion_length: int = Field(default=512, ge=1, description="tokens per completion")
    cut_replies: Literal["masked", "trained"] = Field(
        default="masked",
        description="a completion cut by max_completion_length: masked: scored, but left out of "
        "the loss (TRL's mask_truncated_completions); trained: in the loss like a finished one",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_k(cls, data: Any) -> Any:
        return reject_renamed_key(data, "train.grpo", "num_generations", "candidates")


class PPOSettings(StrictModel):
    prefixes: Path = Field(default=Path("runs/generate"), description="generate output_dir")
    init_adapter: Path | None = Field(default=None, description="start from this adapter (SFT)")
    learning_rate: float = Field(default=2e-6, description="peak learning rate")
    epochs: int = Field(default=5, ge=1, description="PPO epochs over each batch of rollouts")
    rollouts: int = Field(default=64, ge=1, description="replies sampled per update")
    updates: int = Field(default=4, ge=1, description="rounds of fresh rollouts and PPO epochs")
    clip_range: float = Field(default=0.2, gt=0, description="clip of the policy ratio")
    value_clip_range: float = Field(default=0.2, gt=0, description="clip of value updates")
    value_coef: float = Field(default=0.1, ge=0, description="weight of the value loss")
    kl_coef: float = Field(default=0.05, ge=0, description="KL penalty to the reference")
    gamma: float = Field(default=1.0, ge=0, le=1, description="discount")
    lam: float = Field(default=0.95, ge=0, le=1, description="GAE lambda")
    max_grad_norm: float = Field(default=1.0, gt=0, description="gradients clipped to this norm")


class TrackingConfig(StrictModel):
    """Experiment tracking for generate, eval and every train recipe (README, "Tracking")."""

    report_to: list[Literal["tensorboard", "wandb", "trackio"]] = Field(
        default_factory=list, description="where run figures go; [] tracks nothing"
    )
    log_dir: Path | None = Field(
        default=None,
        description="TensorBoard event folder; null: runs/ in the command's output folder",
    )
    run_name: str | None = Field(
        default=None,
        description="the run's name in W&B / Trackio; null: the stage (generate, eval, ppo, ...)",
    )
    project: str = Field(default="collabrl", description="W&B / Trackio project")

    @field_validator("report_to")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"names a tracker twice: {value}")
        return value


class TrainConfig(StrictModel):
    """``collabrl train <method>``: settings shared by every recipe, then one section each."""

    _tracking: TrackingConfig = PrivateAttr(default_factory=TrackingConfig)

    model: str = Field(default="smollm2-135m-instruct", description="folder, hub id or alias")
    output_dir: Path = Field(default=Path("runs/train"), description="checkpoints and final/")
    lora: LoraSettings | None = Field(
        default_factory=LoraSettings, description="`null` for full fine-tuning"
    )
    per_device_batch_size: int = Field(default=8, ge=1, description="examples per device and step")
    gradient_accumulation_steps: int = Field(default=8, ge=1, description="paper: 64 per step")
    max_steps: int = Field(default=-1, description="> 0 overrides epochs")
    max_length: int = Field(default=2048, ge=32, description="tokens per example")
    seed: int = Field(default=0, description="random seed")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        default="auto", description="dtype of the weights"
    )
    gradient_checkpointing: bool = Field(default=False, description="less memory, more compute")
    save_steps: int = Field(default=100, ge=1, description="steps between checkpoints")
    logging_steps: int = Field(default=10, ge=1, description="steps between log lines")
    resume: bool = Field(
        default=True, description="continue from the last checkpoint in output_dir"
    )
    sft: SFTSettings = Field(
        default=SFTSettings(), description="`collabrl train sft`: fine-tuning on the best paths"
    )
    dpo: DPOSettings = Field(
        default=DPOSettings(), description="`collabrl train dpo`: offline DPO on the exported pairs"
    )
    online_dpo: OnlineDPOSettings = Field(
        default=OnlineDPOSettings(),
        description="`collabrl train online-dpo`: rounds of sampling from the live policy, MR, DPO",
    )
    grpo: GRPOSettings = Field(
        default=GRPOSettings(), description="`collabrl train grpo`: TRL GRPO or RLOO, MR as reward"
    )
    ppo: PPOSettings = Field(
        default=PPOSettings(), description="`collabrl train ppo`: value head, GAE, clipped loss, KL"
    )

    @model_validator(mode="before")
    @classmethod
    def _moved_report_to(cls, data: Any) -> Any:
        if isinstance(data, dict) and "report_to" in data:
            raise ValueError(
                "train.report_to moved to tracking.report_to (it now covers every "
                "stage, not only the TRL trainers)"
            )
        return data

    @property
    def tracking(self) -> TrackingConfig:
        """The root config's ``tracking`` section (``Config`` hands it over), for TRL's args."""
        return self._tracking


class SandboxConfig(StrictModel):
    """Running model-written code: every ``pass_rate`` metric and generate's task-set gate."""

    allow_weak_isolation: bool = Field(
        default=False,
        description="run model-written code even where the sandbox's start-up probe finds the "
        "isolation weak (no bubblewrap, the code as root, host files writable, network, no "
        "process limit, /proc readable); off: refuse before running anything",
    )


class BudgetCaps(StrictModel):
    """Caps on what a command may spend; a cap left out (null) is not applied."""

    usd: float | None = Field(
        default=None,
        gt=0,
        description="money, from the roles' prices (every role called needs roles.<role>.price)",
    )
    tokens: int | None = Field(
        default=None, ge=1, description="prompt + completion tokens of answers not from the cache"
    )
    requests: int | None = Field(
        default=None,
        ge=1,
        description="model calls past the cache (a cache hit is free; a retry is the same call)",
    )

    def caps(self) -> dict[str, float]:
        """The caps that are set, by name."""
        return {k: v for k, v in self.model_dump(exclude={"roles"}).items() if v is not None}


class BudgetConfig(BudgetCaps):
    """Caps on one invocation of generate, eval, simulate or an online training recipe (offline
    sft/dpo ignore them): near a cap no new conversation, round or step starts; at a cap no new
    call starts (README, "Budget")."""

    roles: dict[str, BudgetCaps] = Field(
        default_factory=dict, description="caps on one role's spend, besides the whole run's"
    )


class DemoConfig(StrictModel):
    """``collabrl demo``: generate, export, train DPO, eval and report in one command."""

    report: Path = Field(default=Path("runs/demo/report.html"), description="the HTML report")
    sizes: dict[str, list[str]] = Field(
        default_factory=dict, description="named sets of key=value overrides, picked with --size"
    )


class Config(StrictModel):
    """The root of every collabrl config file."""

    roles: dict[str, BackendConfig] = Field(
        default_factory=dict,
        description="every role (policy, user, judge, ...) and the backend it is bound to",
    )
    cache: CacheConfig = Field(default=CacheConfig(), description="the response cache")
    user: SimulatorConfig = SimulatorConfig()
    assistant: AssistantConfig = AssistantConfig()
    reward: RewardConfig = RewardConfig()
    simulate: SimulateConfig = SimulateConfig()
    generate: GenerateConfig = GenerateConfig()
    export: ExportConfig = ExportConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    demo: DemoConfig = DemoConfig()
    sandbox: SandboxConfig = Field(
        default=SandboxConfig(), description="weak isolation is refused unless opted into here"
    )
    budget: BudgetConfig = Field(
        default=BudgetConfig(), description="caps on spend: money, tokens, requests"
    )
    tracking: TrackingConfig = Field(
        default=TrackingConfig(),
        description="experiment tracking (TensorBoard, W&B, Trackio) for every stage",
    )

    @model_validator(mode="after")
    def _tracking_for_train(self) -> Config:
        self.train._tracking = self.tracking
        return self

    @model_validator(mode="after")
    def _role_names(self) -> Config:
        for name in self.roles:
            if not name.replace("_", "").isalnum():
                raise ValueError(f"role name {name!r} must be letters, digits and underscores")
        for name, caps in self.budget.roles.items():
            if name not in self.roles:
                raise ValueError(f"budget.roles.{name}: no such role (roles.{name} is not defined)")
            if caps.usd is not None and self.roles[name].price is None:
                raise ValueError(
                    f"budget.roles.{name}.usd: the role has no price, so its spend "
                    f"cannot be counted in money; set roles.{name}.price"
                )
        return self

    def role(self, name: str) -> BackendConfig:
        if name not in self.roles:
            known = ", ".join(sorted(self.roles)) or "none"
            raise ConfigError(f"config has no role {name!r} (defined: {known}); add roles.{name}")
        return self.roles[name]


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one ``dotted.key=value`` override in place; the value is parsed as YAML."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not of the form key=value")
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"override {override!r}: {where} is not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(
            f"override {key.strip()}: {raw!r} is not a YAML value ({yaml_problem(e)})"
        ) from None


def yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: the problem and where it is."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return (
        problem if mark is None else f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    )


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line: ``invalid config SOURCE: key: problem; key: problem``."""
    problems = []
    for item in error.errors():
        loc = list(item["loc"])
        if len(loc) > 2 and loc[0] == "roles" and loc[2] in _BACKEND_KINDS:
            del loc[2]  # pydantic adds the union member's tag; the user never wrote it
        where = ".".join(str(p) for p in loc) or "(root)"
        problems.append(f"{where}: {item['msg']}")
    return f"invalid config {source}: " + "; ".join(problems)


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Read a YAML config (or start empty), apply overrides, validate."""
    return load_model_config(Config, path, overrides)


def load_model_config(
    model: type[M], path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
) -> M:
    """Read a YAML file (or start empty), apply ``key=value`` overrides, validate as ``model``;
    every failure is a ConfigError that names the file and the field."""
    data: dict[str, Any] = {}
    source = "(no file)"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config {path} is not UTF-8 text") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config {path} is not valid YAML: {yaml_problem(e)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config {path} must be a mapping at the top level")
    for override in overrides:
        apply_override(data, override)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
