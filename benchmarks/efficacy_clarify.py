"""Benchmark: does the project's pipeline (data engine -> export -> DPO) move behaviour?

Run:  .venv/bin/python benchmarks/efficacy_clarify.py [--quick] [--threads 1]
      (``--write-requests`` regenerates benchmarks/clarify/requests.jsonl from the templates here)

A controlled check on SmolLM2-135M-Instruct. Every request in ``benchmarks/clarify/requests.jsonl``
misses one detail the answer needs ("Write a birthday message for my friend." - the friend is Maya),
so asking first is the right move. The held-out ``eval`` requests come from other templates and
topics than the ``train`` ones (only generic openers such as "Hi! " and closers such as
" Thanks!" are shared), and no two requests of a split read the same.

- Scripted user (a ``ScriptedBackend`` behind the project's ``UserSimulator``): opens with the
  request; reveals the hidden detail only when the assistant's last reply contains a '?',
  otherwise answers something non-committal; ends the chat once a reply uses the detail.
- Deterministic reward (MR as usual, from forward-sampled futures whose assistant is the policy
  itself): ``detail_in_final_reply`` = 1 if the conversation's last assistant reply names the
  hidden keyword (whole word, any case), else 0; ``turn_cost`` = -0.05 per assistant turn.
- Pairs: ``DataEngine`` (k candidates at temperature T, a share with the proactive system
  prompt, one scored assistant turn per request), ``collabrl.export.export`` (min gap), and a
  check that no exported prompt carries a system message (the proactive prompt must not leak).
- Training: ``collabrl.train.dpo.train`` (LoRA DPO, the recipe ``collabrl train dpo`` runs).
- Measure: the share of first replies that ask a question, defined as "the reply contains '?'",
  on the held-out requests; greedy decoding, the same ``max_tokens``, no system prompt, before
  (base model) and after (base + the trained adapter, merged). The difference's 95% interval is a
  paired bootstrap over eval requests (``collabrl.stats.paired_difference``, seed 0).

Prompt format: the model's own chat template everywhere (candidates, futures, DPO through
``collabrl.train.common.load_tokenizer``, evaluation); for SmolLM2 it adds a default system line
("You are a helpful AI assistant named SmolLM ...") to every chat.

Goal: the lower end of ci95_diff (after - before) is above 0. Progress goes to stderr; the last
line on stdout is one JSON object: before, after, n_eval, ci95_diff, then details.

Settings (the defaults): k = 6 candidates at temperature 0.7, 2 of them with the proactive
prompt; S = 1 future of w = 1 turn pair at 0.7; 48 new tokens per reply; min gap 0.02; LoRA
r = 16, alpha = 32, dropout 0.1; DPO beta 0.1, lr 2e-4, 4 epochs, 8 pairs per step.
``--quick``: 3 train and 2 eval requests per template, 2 epochs (a smoke run, no effect expected).

Findings (2-core CPU shared with another job, bf16, 1 torch thread; 2 threads made generation
about 10x slower while the other job held a core), with SmolLM2's own chat template everywhere:
SmolLM2 asks in about 11% of its sampled candidates (22% with the proactive prompt); 47 of 156
training turns give a pair (the chosen reply asks in all of them, the rejected in 4%); held-out
greedy first replies ask 0.05 before, 0.575 after, ci95_diff [0.41, 0.64], n_eval 80. Wall time
23 min with another job on the machine (data engine 15 min, DPO 7 min, evaluation 1 min).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REQUESTS = HERE / "clarify" / "requests.jsonl"
DESCRIPTION = "get help with a short personal writing or planning request"
TURN_COST = 0.05
NON_COMMITTAL = ("Hmm, okay.", "Sure, go ahead.", "Okay, whatever you think.", "Fine, sounds good.")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the requests -----------------------------------------------------------------------------

NAMES = ["Maya", "Omar", "Priya", "Lucas", "Hannah", "Kenji", "Zoe", "Diego", "Amara", "Felix",
         "Ingrid", "Mateo", "Leila", "Tobias", "Nadia", "Arjun", "Clara", "Emeka", "Sofia", "Rafael",
         "Yuki", "Elena", "Marcus", "Aisha", "Henrik", "Lucia", "Dmitri", "Grace", "Tariq", "Mila"]
SURNAMES = ["Alvarez", "Okafor", "Lindqvist", "Nakamura", "Petrova", "Brennan", "Haddad",
            "Kowalski", "Moreau", "Santos", "Fischer", "Delgado", "Novak"]
CITIES = ["Lisbon", "Kyoto", "Edinburgh", "Vancouver", "Marrakesh", "Prague", "Oaxaca", "Bergen",
          "Seville", "Hanoi", "Tallinn", "Cusco", "Porto", "Dubrovnik"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# (template, request phrasings, detail pattern, keyword slot, slot values); eval templates share
# neither wording nor topic with the train ones.
TEMPLATES: dict[str, list[tuple[str, Sequence[str], str, str, dict[str, Sequence[Any]]]]] = {
    "train": [
        ("birthday", ["Write a birthday message for my friend.", "Can you write a happy birthday note for my friend?",
          "I need a birthday card text for a friend."],
         "My friend is called {name} and is turning {age}.", "name",
         {"name": NAMES, "age": [21, 25, 30, 40, 50, 60]}),
        ("teacher", ["Write a thank-you note to my teacher.", "Help me write a short thank-you card for my teacher.",
          "I want to thank my old teacher, write something."],
         "My teacher is Mr. {surname}, who taught me {subject}.", "surname",
         {"surname": SURNAMES, "subject": ["chemistry", "history", "piano", "French", "math"]}),
        ("toast", ["Write a toast for my brother's wedding.", "I need a short wedding toast for my brother.",
          "Help me with a speech for my brother's wedding."],
         "My brother {name} is marrying {name2}.", "name", {"name": NAMES, "name2": NAMES[::-1]}),
        ("reschedule", ["Write an email to reschedule my meeting.", "Draft a short email moving my meeting.",
          "I have to push back a meeting, can you write the email?"],
         "Please move the meeting to {day} at {hour} pm.", "day", {"day": DAYS, "hour": [1, 2, 3, 4]}),
        ("trip", ["Plan a weekend trip for me.", "Can you plan a two-day trip for me?",
          "Make me an itinerary for a short city break."],
         "I want to go to {city}.", "city", {"city": CITIES}),
        ("recipe", ["Suggest a recipe for dinner tonight.", "What should I cook for dinner tonight?",
          "Give me an easy dinner idea."],
         "I have {ingredient} that I need to use up.", "ingredient",
         {"ingredient": ["chickpeas", "salmon", "mushrooms", "spinach", "tofu", "eggplant",
                         "lentils", "zucchini", "shrimp", "cauliflower", "pumpkin", "quinoa", "beets",
                         "halloumi", "leeks"]}),
        ("pet", ["Write a short poem about my pet.", "Write a few cute lines about my pet.",
          "Make up a little rhyme about my pet."],
         "My {animal} is called {pet}.", "pet",
         {"animal": ["cat", "dog", "rabbit", "parrot", "hamster"],
          "pet": ["Biscuit", "Pepper", "Noodle", "Mochi", "Ziggy", "Waffles", "Pickles", "Luna",
                  "Bruno", "Peanut", "Olive", "Tofu"]}),
        ("party", ["Write an invitation to my party.", "Write a short invite for my party.",
          "I am throwing a party, write the invite text."],
         "The party is on {day} at {hour} pm at my place.", "day", {"day": DAYS, "hour": [5, 6, 7, 8]}),
        ("getwell", ["Write a get-well message for my coworker.", "Help me write a get-well-soon note for a coworker.",
          "A coworker is in hospital, write a kind note."],
         "My coworker {name} broke a leg skiing.", "name", {"name": NAMES}),
        ("bio", ["Write a short bio for my website.", "Write a two-sentence bio for my personal site.",
          "I need an about-me paragraph."],
         "I am {name}, a {job}.", "name",
         {"name": NAMES, "job": ["photographer", "nurse", "carpenter", "data analyst", "chef"]}),
        ("graduation", ["Write a congratulations message for my cousin.", "Help me congratulate my cousin in a short text.",
          "My cousin finished university, write a congratulations card."],
         "My cousin {name} just graduated in {field}.", "name",
         {"name": NAMES, "field": ["nursing", "law", "engineering", "biology", "design"]}),
        ("roommate", ["Write a reminder text for my roommate.", "Draft a friendly reminder for my roommate.",
          "Remind my roommate about a bill, politely."],
         "The {bill} bill has to be paid by {day}.", "bill",
         {"bill": ["electricity", "internet", "water", "gas", "rent"], "day": DAYS}),
    ],
    "eval": [
        ("farewell", ["Write a farewell message for a colleague who is leaving.", "A coworker is leaving, write a goodbye card.",
          "Help me say goodbye to a colleague in a short note."],
         "My colleague {name} is moving to {city}.", "name", {"name": NAMES, "city": CITIES}),
        ("neighbor", ["Write a welcome note for my new neighbor.", "Someone just moved in next door, write a welcome card.",
          "Help me greet my new neighbor with a short note."],
         "My new neighbor is called {name}.", "name", {"name": NAMES}),
        ("apology", ["Write an apology text to my friend.", "I let a friend down, write an apology.",
          "Help me say sorry to a friend by text."],
         "I am apologising to {name} for missing the {event}.", "name",
         {"name": NAMES, "event": ["concert", "dinner", "game", "wedding rehearsal"]}),
        ("book", ["Recommend a book for my dad.", "What book should I get my father?",
          "Pick a good book to give my dad."],
         "My dad loves {genre} books.", "genre",
         {"genre": ["mystery", "history", "science fiction", "fantasy", "poetry", "cooking",
                    "travel", "sports"]}),
        ("table", ["Write a message to book a table at a restaurant.", "Draft a restaurant reservation request.",
          "Help me reserve a table by email."],
         "A table for {n} people on {day} evening.", "day", {"n": [2, 3, 4, 6], "day": DAYS}),
        ("anniversary", ["Write a short speech for my grandparents' anniversary.", "My grandparents celebrate their anniversary, write a toast.",
          "Help me with a few words for my grandparents' anniversary party."],
         "My grandparents {name} and {name2} have been married for {years} years.", "name",
         {"name": NAMES, "name2": NAMES[::-1], "years": [40, 50, 60]}),
        ("workout", ["Create a workout plan for me.", "Make me a training schedule.", "Help me plan my workouts for the next month."],
         "I am training for a {race}.", "race",
         {"race": ["marathon", "triathlon", "duathlon", "10K", "trek", "swimathon", "rowing regatta",
                   "cycling sportive"]}),
        ("caption", ["Write a caption for my vacation photo.", "I need an Instagram caption for a holiday picture.",
          "Give me a caption for a travel photo."],
         "The photo was taken in {city}.", "city", {"city": CITIES}),
        ("retirement", ["Write a retirement card for my boss.", "My manager is retiring, write a card.",
          "Help me write a retirement message for my boss."],
         "My boss {name} is retiring after {years} years.", "name",
         {"name": NAMES, "years": [20, 25, 30, 35]}),
        ("landlord", ["Draft a message to my landlord about a repair.", "Something in my flat broke, write to my landlord.",
          "Help me ask my landlord to fix something."],
         "The {appliance} in my flat is broken.", "appliance",
         {"appliance": ["fridge", "heater", "oven", "washing machine", "dishwasher", "shower",
                       "boiler", "doorbell"]}),
    ],
}
PER_TEMPLATE = {"train": 13, "eval": 8}
# generic wording around the core phrasing, so that no two requests of a split read the same
OPENERS = ["", "Hi! ", "Hey, quick one: ", "Hello. ", "Please help: ", "Good morning! ",
           "I'm in a hurry. ", "Okay, "]
CLOSERS = ["", " Thanks!", " Keep it short.", " Make it warm.", " Nothing too long, please.",
           " Thank you.", " It's for today."]


def make_requests(seed: int = 0) -> list[dict[str, Any]]:
    """The request set, deterministically from the templates: 156 train, 80 eval."""
    rng = random.Random(seed)
    rows = []
    for split, templates in TEMPLATES.items():
        for name, phrasings, pattern, key, slots in templates:
            space = 1
            for options in slots.values():
                space *= len(options)
            if space < PER_TEMPLATE[split]:
                raise ValueError(f"template {name!r} has too few slot values")
            seen: set[str] = set()
            wordings = [f"{o}{p}{c}" for p in phrasings for o in OPENERS for c in CLOSERS]
            rng.shuffle(wordings)
            while len(seen) < PER_TEMPLATE[split]:
                values = {slot: rng.choice(list(options)) for slot, options in slots.items()}
                if values.get("name2") == values.get("name", object()):
                    continue
                detail = pattern.format(**values)
                if detail in seen:
                    continue
                seen.add(detail)
                rows.append({
                    "id": f"{split}-{name}-{len(seen):02d}", "split": split, "template": name,
                    "request": wordings[len(seen)], "detail": detail, "keyword": str(values[key]),
                })
    return rows


def write_requests(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in make_requests()))


def load_requests(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def to_task(row: dict[str, Any]):
    from collabrl.types import Task

    return Task(id=row["id"], description=DESCRIPTION,
                intent=f"{row['request']} (What I have not said yet: {row['detail']})",
                reference=row["keyword"], metadata=dict(row))


def pick(rows: list[dict[str, Any]], split: str, per_template: int | None) -> list[dict[str, Any]]:
    """The rows of ``split``, at most ``per_template`` of each template (all when None)."""
    chosen = [r for r in rows if r["split"] == split]
    if per_template is None:
        return chosen
    groups = itertools.groupby(chosen, key=lambda r: r["template"])
    return [r for _, group in groups for r in list(group)[:per_template]]


# --- the scripted user and the deterministic reward --------------------------------------------


def asks_question(reply: str) -> bool:
    """The measured behaviour: the reply contains a question mark."""
    return "?" in reply


def mentions(reply: str, keyword: str) -> bool:
    """Whether ``reply`` names ``keyword`` (whole words, any case)."""
    return re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", reply, re.IGNORECASE) is not None


def user_reply(task, assistant_reply: str | None, sample_index: int = 0) -> dict[str, Any]:
    """The scripted user's next turn, as the simulator's JSON object."""
    row = task.metadata
    if assistant_reply is None:
        return {"thought": "open with the bare request", "message": row["request"], "terminate": False}
    if mentions(assistant_reply, row["keyword"]):
        return {"thought": "it uses my detail", "message": "Thanks, that is what I wanted.",
                "terminate": True}
    if asks_question(assistant_reply):
        return {"thought": "asked: reveal the detail", "message": row["detail"], "terminate": False}
    message = NON_COMMITTAL[sample_index % len(NON_COMMITTAL)]
    return {"thought": "not asked: reveal nothing", "message": message, "terminate": False}


class ScriptedUser:
    """``reply_fn`` of a ScriptedBackend playing the user: finds the task by the intent in the
    simulator's system prompt and answers with :func:`user_reply`."""

    def __init__(self, tasks) -> None:
        self.tasks = list(tasks)

    def __call__(self, messages, params, index: int) -> str:
        from collabrl.prompts import load_prompt

        system = messages[0].content
        task = next((t for t in self.tasks if t.intent in system), None)
        if task is None:
            raise ValueError("scripted user: no task's intent in the simulator prompt")
        last = messages[-1].content  # the flipped view: the assistant's reply, or the start cue
        opening = len(messages) == 2 and last.strip() == load_prompt("user_simulator_start").strip()
        return json.dumps(user_reply(task, None if opening else last, index))


class DetailInFinalReply:
    """1 if the conversation's last assistant reply names the hidden keyword, else 0."""

    name = "detail_in_final_reply"

    async def __call__(self, conversation, task):
        from collabrl.types import Score

        replies = conversation.turns("assistant")
        hit = bool(replies) and mentions(replies[-1].content, task.reference)
        return Score(value=1.0 if hit else 0.0)


class TurnCost:
    """-cost per assistant turn in the conversation."""

    name = "turn_cost"

    def __init__(self, cost: float = TURN_COST) -> None:
        self.cost = cost

    async def __call__(self, conversation, task):
        from collabrl.types import Score

        turns = len(conversation.turns("assistant"))
        return Score(value=-self.cost * turns, detail={"turns": turns})


# --- the pipeline -----------------------------------------------------------------------------


def load_base(args):
    import torch
    from transformers import AutoModelForCausalLM

    from collabrl.models import resolve_model
    from collabrl.train.common import load_tokenizer

    path = resolve_model(args.model)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    tokenizer = load_tokenizer(path)
    return path, model, tokenizer


async def generate_pairs(model, tokenizer, tasks, args, workdir: Path) -> dict[str, Any]:
    """Data engine -> export; returns facts about the pairs (and the leak check)."""
    from collabrl.backends.hf_local import HFLocalBackend
    from collabrl.backends.scripted import ScriptedBackend
    from collabrl.config import ExportConfig, GenerateConfig
    from collabrl.engine import DataEngine
    from collabrl.export import export
    from collabrl.prompts import load_prompt
    from collabrl.reward import MultiturnReward, WeightedMetric
    from collabrl.rollout import ForwardSampler, Policy
    from collabrl.simulator import UserSimulator
    from collabrl.types import GenerationParams

    backend = HFLocalBackend(model, tokenizer, max_batch_size=args.batch_rows, max_wait_ms=50)
    params = GenerationParams(temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed)
    policy = Policy(backend, params)
    proactive = Policy(backend, params, system_prompt=load_prompt("proactive"))
    user = UserSimulator(ScriptedBackend(reply_fn=ScriptedUser(tasks), name="scripted-user"),
                         GenerationParams(temperature=0.0, max_tokens=64))
    reward = MultiturnReward(
        {"detail_in_final_reply": WeightedMetric(DetailInFinalReply(), 1.0),
         "turn_cost": WeightedMetric(TurnCost(), 1.0)},
        ForwardSampler(user, policy, samples=args.samples, window=args.window),
    )
    config = GenerateConfig(
        candidates=args.candidates, proactive_share=args.proactive_share, max_turns=1,
        conversations_in_flight=args.in_flight, keep_futures=True, output_dir=workdir / "generate",
    )
    engine = DataEngine(config, user=user, policy=policy, proactive=proactive, reward=reward)
    done = [0]
    started = time.monotonic()

    def progress(record) -> None:
        done[0] += 1
        if done[0] % 10 == 0 or done[0] == len(tasks):
            log(f"  generate: {done[0]}/{len(tasks)} conversations, {time.monotonic() - started:.0f} s")

    try:
        outcomes = await engine.run(tasks, config.output_dir, on_done=progress)
    finally:
        await backend.aclose()
    report = export(ExportConfig(input_dir=config.output_dir, output_dir=workdir / "export",
                                 min_gap=args.min_gap, eval_fraction=0.0, save_dataset=False))
    return {"outcomes": dict(outcomes), "export": report, **pair_facts(workdir, load_prompt("proactive"))}


def pair_facts(workdir: Path, proactive_prompt: str) -> dict[str, Any]:
    """Candidate and pair statistics, and whether any exported prompt leaks a system prompt."""
    from collabrl.records import read_jsonl

    turns = list(read_jsonl(workdir / "generate" / "turns.jsonl"))
    candidates = [c for t in turns for c in t["candidates"]]
    pairs = list(read_jsonl(workdir / "export" / "dpo_train.jsonl"))
    leaked = sum(any(m["role"] == "system" or proactive_prompt.strip()[:60] in m["content"]
                     for m in p["prompt"]) for p in pairs)
    by_source: dict[str, list[int]] = {}
    for c in candidates:
        by_source.setdefault(c["source"], []).append(asks_question(c["text"]))
    return {
        "pairs": len(pairs),
        "candidate_ask_rate": {s: round(sum(v) / len(v), 3) for s, v in by_source.items()},
        "chosen_asks": round(sum(asks_question(p["chosen"][0]["content"]) for p in pairs) / max(1, len(pairs)), 3),
        "rejected_asks": round(sum(asks_question(p["rejected"][0]["content"]) for p in pairs) / max(1, len(pairs)), 3),
        "prompts_with_system_message": leaked,
    }


def train_dpo(args, workdir: Path) -> Path:
    """The project's offline-DPO recipe on the exported pairs; returns the adapter folder."""
    from collabrl.config import load_config
    from collabrl.train import dpo

    config = load_config(None, [
        f"train.model={args.model}", f"train.output_dir={workdir / 'dpo'}",
        f"train.dpo.data={workdir / 'export'}", f"train.per_device_batch_size={args.batch}",
        "train.gradient_accumulation_steps=1", f"train.dpo.learning_rate={args.lr}",
        f"train.dpo.epochs={args.epochs}", f"train.dpo.beta={args.beta}",
        "train.max_length=256", "train.dpo.max_prompt_length=128", "train.save_steps=100000",
        "train.logging_steps=5", "train.resume=false", f"train.seed={args.seed}",
        f"train.lora.r={args.lora_r}", f"train.lora.alpha={args.lora_alpha}", "train.dtype=bfloat16",
    ])
    return dpo.train(config)


async def first_replies(model, tokenizer, rows, args) -> dict[str, str]:
    """Greedy first reply to each bare request (no system prompt)."""
    from collabrl.backends.hf_local import HFLocalBackend
    from collabrl.types import GenerationParams, Message

    backend = HFLocalBackend(model, tokenizer, max_batch_size=args.batch_rows, max_wait_ms=50)
    params = GenerationParams(temperature=0.0, max_tokens=args.max_tokens)
    try:
        replies = await asyncio.gather(*(
            backend.generate([Message(role="user", content=r["request"])], params) for r in rows
        ))
    finally:
        await backend.aclose()
    return {r["id"]: reply[0].text for r, reply in zip(rows, replies)}


def load_after(path: str, adapter: Path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload().eval()


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (a few minutes)")
    parser.add_argument("--write-requests", action="store_true", help="rewrite the request file and exit")
    parser.add_argument("--requests", type=Path, default=REQUESTS)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core CPU)")
    parser.add_argument("--workdir", type=Path, help="keep the run's files here (default: a temp folder)")
    parser.add_argument("--reuse-pairs", action="store_true",
                        help="skip the data engine: train on the pairs already in --workdir (tuning)")
    parser.add_argument("--train-per-template", type=int, help="train requests per template (default all)")
    parser.add_argument("--eval-per-template", type=int, help="eval requests per template (default all)")
    parser.add_argument("--candidates", type=int, default=6, help="k per assistant turn")
    parser.add_argument("--proactive-share", type=float, default=1 / 3)
    parser.add_argument("--temperature", type=float, default=0.7, help="candidates and futures")
    parser.add_argument("--samples", type=int, default=1, help="S futures per candidate")
    parser.add_argument("--window", type=int, default=1, help="w turn pairs per future")
    parser.add_argument("--max-tokens", type=int, default=48, help="every generated reply")
    parser.add_argument("--min-gap", type=float, default=0.02)
    parser.add_argument("--in-flight", type=int, default=32, help="conversations at once")
    parser.add_argument("--batch-rows", type=int, default=32, help="rows per model.generate")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=8, help="pairs per optimizer step")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.reuse_pairs and args.workdir is None:
        parser.error("--reuse-pairs needs --workdir")
    if args.quick:  # a smoke run of every stage; too small to show the effect
        args.train_per_template = args.train_per_template or 3
        args.eval_per_template = args.eval_per_template or 2
        args.epochs = min(args.epochs, 2.0)
    return args


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import torch
    from transformers.utils import logging as hf_logging

    from collabrl.stats import paired_difference

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    started = time.monotonic()
    timings: dict[str, float] = {}
    rows = load_requests(args.requests)
    train_rows = pick(rows, "train", args.train_per_template)
    eval_rows = pick(rows, "eval", args.eval_per_template)
    assert not {r["template"] for r in train_rows} & {r["template"] for r in eval_rows}
    log(f"{len(train_rows)} train requests, {len(eval_rows)} held-out eval requests")
    path, model, tokenizer = load_base(args)

    t0 = time.monotonic()
    before_text = asyncio.run(first_replies(model, tokenizer, eval_rows, args))
    before = {k: float(asks_question(v)) for k, v in before_text.items()}
    log(f"before: {sum(before.values()):.0f}/{len(before)} first replies ask ({time.monotonic() - t0:.0f} s)")

    t0 = time.monotonic()
    if args.reuse_pairs:
        from collabrl.prompts import load_prompt

        facts = pair_facts(workdir, load_prompt("proactive"))
    else:
        facts = asyncio.run(generate_pairs(model, tokenizer, [to_task(r) for r in train_rows], args, workdir))
    timings["generate_s"] = round(time.monotonic() - t0, 1)
    log(f"data engine + export: {timings['generate_s']:.0f} s; {json.dumps(facts)}")
    if facts["pairs"] == 0:
        raise SystemExit("no preference pairs: nothing to train on")
    del model

    t0 = time.monotonic()
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its logs: stdout ends in JSON
        adapter = train_dpo(args, workdir)
    timings["dpo_s"] = round(time.monotonic() - t0, 1)
    log(f"DPO: {timings['dpo_s']:.0f} s -> {adapter}")

    t0 = time.monotonic()
    after_text = asyncio.run(first_replies(load_after(path, adapter), tokenizer, eval_rows, args))
    after = {k: float(asks_question(v)) for k, v in after_text.items()}
    log(f"after: {sum(after.values()):.0f}/{len(after)} first replies ask ({time.monotonic() - t0:.0f} s)")
    (workdir / "eval_replies.jsonl").write_text("".join(
        json.dumps({"id": k, "before": before_text[k], "after": after_text[k]}) + "\n" for k in before_text))

    diff = paired_difference("after", after, "before", before, seed=0).estimate
    n = len(before)
    return {
        "before": round(sum(before.values()) / n, 4), "after": round(sum(after.values()) / n, 4),
        "n_eval": n, "ci95_diff": [round(diff.low, 4), round(diff.high, 4)],
        "diff": round(diff.mean, 4), "n_train_requests": len(train_rows), "pairs": facts["pairs"],
        "candidate_ask_rate": facts["candidate_ask_rate"], "chosen_asks": facts["chosen_asks"],
        "rejected_asks": facts["rejected_asks"],
        "prompts_with_system_message": facts["prompts_with_system_message"],
        "settings": {k: v for k, v in vars(args).items()
                     if k not in ("requests", "workdir", "write_requests")},
        **timings, "wall_s": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.write_requests:
        write_requests(args.requests)
        log(f"wrote {args.requests}")
        return
    os.environ.setdefault("TQDM_DISABLE", "1")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before torch is imported
        os.environ[name] = str(args.threads)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="efficacy-clarify-") as tmp:
            result = run(args, Path(tmp))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
