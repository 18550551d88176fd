"""``clarify-chat``: requests that miss one detail the answer needs, and a user who holds it.

"Write a birthday message for my friend." cannot be done well without the friend's name, so the
right first move is to ask. Each task's user opens with such a request; ``Task.intent`` is the
request with the detail ("... My friend is called Maya and is turning 30."). The metadata carries
what a rule-based user (``collabrl.rule_user``) and the ``detail_success`` metric need:

- ``opening``: the first user message (the request without the detail);
- ``detail``: the sentence the user gives when asked; ``detail_keywords``: the word(s) a reply
  must use for the task to count as done (whole word, any case);
- ``needs_clarification``: False for the *complete* requests, which already hold the detail, so
  asking is a wasted turn (the over-asking check); those carry ``eval_group: complete requests``
  so that eval reports them apart;
- ``template`` and ``split``.

The split is explicit, not hashed: train and test requests come from different templates and
topics (only generic openers such as "Hi! " and closers such as " Thanks!" are shared), so the
test split measures whether asking generalises rather than whether a request was memorised. The
set (156 train and 80 test requests needing a detail; 24 train and 30 test complete requests) is generated
deterministically from the templates below and shipped as ``data/clarify_chat.jsonl``; rows are
interleaved so that any ``limit`` takes a balanced share of every template and kind.
``python -m collabrl.tasks.clarify`` rewrites the file.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from collabrl.tasks.base import load_task_file
from collabrl.types import Task

Split = Literal["train", "test"]
Template = tuple[str, Sequence[str], str, str, dict[str, Sequence[Any]]]
DESCRIPTION = "get help with a short personal writing or planning request"
COMPLETE_GROUP = "complete requests"
PER_TEMPLATE: dict[Split, int] = {"train": 13, "test": 8}
COMPLETE_PER_TEMPLATE: dict[Split, int] = {"test": 3, "train": 2}

NAMES = [
    "Maya",
    "Omar",
    "Priya",
    "Lucas",
    "Hannah",
    "Kenji",
    "Zoe",
    "Diego",
    "Amara",
    "Felix",
    "Ingrid",
    "Mateo",
    "Leila",
    "Tobias",
    "Nadia",
    "Arjun",
    "Clara",
    "Emeka",
    "Sofia",
    "Rafael",
    "Yuki",
    "Elena",
    "Marcus",
    "Aisha",
    "Henrik",
    "Lucia",
    "Dmitri",
    "Grace",
    "Tariq",
    "Mila",
]
SURNAMES = [
    "Alvarez",
    "Okafor",
    "Lindqvist",
    "Nakamura",
    "Petrova",
    "Brennan",
    "Haddad",
    "Kowalski",
    "Moreau",
    "Santos",
    "Fischer",
    "Delgado",
    "Novak",
]
CITIES = [
    "Lisbon",
    "Kyoto",
    "Edinburgh",
    "Vancouver",
    "Marrakesh",
    "Prague",
    "Oaxaca",
    "Bergen",
    "Seville",
    "Hanoi",
    "Tallinn",
    "Cusco",
    "Porto",
    "Dubrovnik",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# (template, request phrasings, detail pattern, keyword slot, slot values); the test templates
# share neither wording nor topic with the train ones.
TEMPLATES: dict[Split, list[Template]] = {
    "train": [
        (
            "birthday",
            [
                "Write a birthday message for my friend.",
                "Can you write a happy birthday note for my friend?",
                "I need a birthday card text for a friend.",
            ],
            "My friend is called {name} and is turning {age}.",
            "name",
            {"name": NAMES, "age": [21, 25, 30, 40, 50, 60]},
        ),
        (
            "teacher",
            [
                "Write a thank-you note to my teacher.",
                "Help me write a short thank-you card for my teacher.",
                "I want to thank my old teacher, write something.",
            ],
            "My teacher is Mr. {surname}, who taught me {subject}.",
            "surname",
            {"surname": SURNAMES, "subject": ["chemistry", "history", "piano", "French", "math"]},
        ),
        (
            "toast",
            [
                "Write a toast for my brother's wedding.",
                "I need a short wedding toast for my brother.",
                "Help me with a speech for my brother's wedding.",
            ],
            "My brother {name} is marrying {name2}.",
            "name",
            {"name": NAMES, "name2": NAMES[::-1]},
        ),
        (
            "reschedule",
            [
                "Write an email to reschedule my meeting.",
                "Draft a short email moving my meeting.",
                "I have to push back a meeting, can you write the email?",
            ],
            "Please move the meeting to {day} at {hour} pm.",
            "day",
            {"day": DAYS, "hour": [1, 2, 3, 4]},
        ),
        (
            "trip",
            [
                "Plan a weekend trip for me.",
                "Can you plan a two-day trip for me?",
                "Make me an itinerary for a short city break.",
            ],
            "I want to go to {city}.",
            "city",
            {"city": CITIES},
        ),
        (
            "recipe",
            [
                "Suggest a recipe for dinner tonight.",
                "What should I cook for dinner tonight?",
                "Give me an easy dinner idea.",
            ],
            "I have {ingredient} that I need to use up.",
            "ingredient",
            {
                "ingredient": [
                    "chickpeas",
                    "salmon",
                    "mushrooms",
                    "spinach",
                    "tofu",
                    "eggplant",
                    "lentils",
                    "zucchini",
                    "shrimp",
                    "cauliflower",
                    "pumpkin",
                    "quinoa",
                    "beets",
                    "halloumi",
                    "leeks",
                ]
            },
        ),
        (
            "pet",
            [
                "Write a short poem about my pet.",
                "Write a few cute lines about my pet.",
                "Make up a little rhyme about my pet.",
            ],
            "My {animal} is called {pet}.",
            "pet",
            {
                "animal": ["cat", "dog", "rabbit", "parrot", "hamster"],
                "pet": [
                    "Biscuit",
                    "Pepper",
                    "Noodle",
                    "Mochi",
                    "Ziggy",
                    "Waffles",
                    "Pickles",
                    "Luna",
                    "Bruno",
                    "Peanut",
                    "Olive",
                    "Tofu",
                ],
            },
        ),
        (
            "party",
            [
                "Write an invitation to my party.",
                "Write a short invite for my party.",
                "I am throwing a party, write the invite text.",
            ],
            "The party is on {day} at {hour} pm at my place.",
            "day",
            {"day": DAYS, "hour": [5, 6, 7, 8]},
        ),
        (
            "getwell",
            [
                "Write a get-well message for my coworker.",
                "Help me write a get-well-soon note for a coworker.",
                "A coworker is in hospital, write a kind note.",
            ],
            "My coworker {name} broke a leg skiing.",
            "name",
            {"name": NAMES},
        ),
        (
            "bio",
            [
                "Write a short bio for my website.",
                "Write a two-sentence bio for my personal site.",
                "I need an about-me paragraph.",
            ],
            "I am {name}, a {job}.",
            "name",
            {"name": NAMES, "job": ["photographer", "nurse", "carpenter", "data analyst", "chef"]},
        ),
        (
            "graduation",
            [
                "Write a congratulations message for my cousin.",
                "Help me congratulate my cousin in a short text.",
                "My cousin finished university, write a congratulations card.",
            ],
            "My cousin {name} just graduated in {field}.",
            "name",
            {"name": NAMES, "field": ["nursing", "law", "engineering", "biology", "design"]},
        ),
        (
            "roommate",
            [
                "Write a reminder text for my roommate.",
                "Draft a friendly reminder for my roommate.",
                "Remind my roommate about a bill, politely.",
            ],
            "The {bill} bill has to be paid by {day}.",
            "bill",
            {"bill": ["electricity", "internet", "water", "gas", "rent"], "day": DAYS},
        ),
    ],
    "test": [
        (
            "farewell",
            [
                "Write a farewell message for a colleague who is leaving.",
                "A coworker is leaving, write a goodbye card.",
                "Help me say goodbye to a colleague in a short note.",
            ],
            "My colleague {name} is moving to {city}.",
            "name",
            {"name": NAMES, "city": CITIES},
        ),
        (
            "neighbor",
            [
                "Write a welcome note for my new neighbor.",
                "Someone just moved in next door, write a welcome card.",
                "Help me greet my new neighbor with a short note.",
            ],
            "My new neighbor is called {name}.",
            "name",
            {"name": NAMES},
        ),
        (
            "apology",
            [
                "Write an apology text to my friend.",
                "I let a friend down, write an apology.",
                "Help me say sorry to a friend by text.",
            ],
            "I am apologising to {name} for missing the {event}.",
            "name",
            {"name": NAMES, "event": ["concert", "dinner", "game", "wedding rehearsal"]},
        ),
        (
            "book",
            [
                "Recommend a book for my dad.",
                "What book should I get my father?",
                "Pick a good book to give my dad.",
            ],
            "My dad loves {genre} books.",
            "genre",
            {
                "genre": [
                    "mystery",
                    "history",
                    "science fiction",
                    "fantasy",
                    "poetry",
                    "cooking",
                    "travel",
                    "sports",
                ]
            },
        ),
        (
            "table",
            [
                "Write a message to book a table at a restaurant.",
                "Draft a restaurant reservation request.",
                "Help me reserve a table by email.",
            ],
            "A table for {n} people on {day} evening.",
            "day",
            {"n": [2, 3, 4, 6], "day": DAYS},
        ),
        (
            "anniversary",
            [
                "Write a short speech for my grandparents' anniversary.",
                "My grandparents celebrate their anniversary, write a toast.",
                "Help me with a few words for my grandparents' anniversary party.",
            ],
            "My grandparents {name} and {name2} have been married for {years} years.",
            "name",
            {"name": NAMES, "name2": NAMES[::-1], "years": [40, 50, 60]},
        ),
        (
            "workout",
            [
                "Create a workout plan for me.",
                "Make me a training schedule.",
                "Help me plan my workouts for the next month.",
            ],
            "I am training for a {race}.",
            "race",
            {
                "race": [
                    "marathon",
                    "triathlon",
                    "duathlon",
                    "10K",
                    "trek",
                    "swimathon",
                    "rowing regatta",
                    "cycling sportive",
                ]
            },
        ),
        (
            "caption",
            [
                "Write a caption for my vacation photo.",
                "I need an Instagram caption for a holiday picture.",
                "Give me a caption for a travel photo.",
            ],
            "The photo was taken in {city}.",
            "city",
            {"city": CITIES},
        ),
        (
            "retirement",
            [
                "Write a retirement card for my boss.",
                "My manager is retiring, write a card.",
                "Help me write a retirement message for my boss.",
            ],
            "My boss {name} is retiring after {years} years.",
            "name",
            {"name": NAMES, "years": [20, 25, 30, 35]},
        ),
        (
            "landlord",
            [
                "Draft a message to my landlord about a repair.",
                "Something in my flat broke, write to my landlord.",
                "Help me ask my landlord to fix something.",
            ],
            "The {appliance} in my flat is broken.",
            "appliance",
            {
                "appliance": [
                    "fridge",
                    "heater",
                    "oven",
                    "washing machine",
                    "dishwasher",
                    "shower",
                    "boiler",
                    "doorbell",
                ]
            },
        ),
    ],
}
# generic wording around the core phrasing, so that no two requests of a split read the same
OPENERS = [
    "",
    "Hi! ",
    "Hey, quick one: ",
    "Hello. ",
    "Please help: ",
    "Good morning! ",
    "I'm in a hurry. ",
    "Okay, ",
]
CLOSERS = [
    "",
    " Thanks!",
    " Keep it short.",
    " Make it warm.",
    " Nothing too long, please.",
    " Thank you.",
    " It's for today.",
]


def clarify_chat_file() -> Path:
    """The clarify-chat task file shipped inside the package."""
    return Path(str(resources.files("collabrl.tasks") / "data" / "clarify_chat.jsonl"))


def load_clarify_chat(path: str | Path | None = None) -> list[Task]:
    """The clarify-chat tasks, from the packaged file or a task JSONL file at ``path``."""
    return load_task_file(path or clarify_chat_file())


def split_of_task(task: Task) -> Split:
    """The task's explicit split (``metadata.split``), set by its template."""
    return task.metadata["split"]


def _space(slots: dict[str, Sequence[Any]]) -> int:
    size = 1
    for options in slots.values():
        size *= len(options)
    return size


def _details(rng: random.Random, template: Template, count: int) -> list[tuple[str, str]]:
    """``count`` distinct (detail sentence, keyword) pairs drawn from the template's slots."""
    name, _, pattern, key, slots = template
    if _space(slots) < count:
        raise ValueError(f"template {name!r} has too few slot values")
    seen: dict[str, str] = {}
    while len(seen) < count:
        values = {slot: rng.choice(list(options)) for slot, options in slots.items()}
        if values.get("name2") == values.get("name", object()):
            continue
        seen.setdefault(pattern.format(**values), str(values[key]))
    return list(seen.items())


def _wordings(rng: random.Random, phrasings: Sequence[str]) -> list[str]:
    wordings = [f"{o}{p}{c}" for p in phrasings for o in OPENERS for c in CLOSERS]
    rng.shuffle(wordings)
    return wordings


def _task(
    kind: str, split: Split, template: str, number: int, opening: str, detail: str, keyword: str
) -> Task:
    complete = kind == "complete"
    metadata = {
        "opening": opening,
        "detail": detail,
        "detail_keywords": [keyword],
        "needs_clarification": not complete,
        "template": template,
        "split": split,
    }
    if complete:
        metadata["eval_group"] = COMPLETE_GROUP
    intent = opening if complete else f"{opening} {detail}"
    return Task(
        id=f"clarify-{kind}-{template}-{number:02d}",
        description=DESCRIPTION,
        intent=intent,
        reference=keyword,
        metadata=metadata,
    )


def _requests(rng: random.Random) -> list[Task]:
    """The requests that miss their detail, template by template."""
    tasks = []
    for split, templates in TEMPLATES.items():
        for template in templates:
            wordings = _wordings(rng, template[1])
            for i, (detail, keyword) in enumerate(_details(rng, template, PER_TEMPLATE[split]), 1):
                tasks.append(_task(split, split, template[0], i, wordings[i], detail, keyword))
    return tasks


def _complete_requests(rng: random.Random) -> list[Task]:
    """Requests that already say the detail: asking back is a wasted turn. In the test split
    they check for over-asking; in the train split they give the reward cases where a question
    does not pay, so training can learn when not to ask."""
    tasks = []
    for split in ("test", "train"):  # test first: adding train ones left the test ones as they were
        for template in TEMPLATES[split]:
            name, phrasings = template[0], template[1]
            count = COMPLETE_PER_TEMPLATE[split]
            for i, (detail, keyword) in enumerate(_details(rng, template, count), 1):
                opener, closer = rng.choice(OPENERS), rng.choice(CLOSERS)
                opening = f"{opener}{rng.choice(phrasings)} {detail}{closer}"
                tasks.append(_task("complete", split, name, i, opening, detail, keyword))
    return tasks


def interleave(tasks: list[Task]) -> list[Task]:
    """Tasks ordered so that every prefix holds each (split, template, kind) group in proportion:
    a ``limit`` then samples all templates, and complete requests, evenly."""

    def group(task: Task) -> tuple[str, str, bool]:
        m = task.metadata
        return (m["split"], m["template"], m["needs_clarification"])

    sizes = Counter(map(group, tasks))
    position: Counter[tuple[str, str, bool]] = Counter()
    keyed = []
    for order, task in enumerate(tasks):
        g = group(task)
        keyed.append(((position[g] + 0.5) / sizes[g], order, task))
        position[g] += 1
    return [task for _, _, task in sorted(keyed, key=lambda k: k[:2])]


def make_tasks(seed: int = 0) -> list[Task]:
    """The whole set, deterministically from the templates."""
    return interleave(_requests(random.Random(seed)) + _complete_requests(random.Random(seed + 1)))


def write_tasks(path: Path) -> None:
    path.write_text("".join(json.dumps(t.model_dump(mode="json")) + "\n" for t in make_tasks()))


if __name__ == "__main__":
    write_tasks(clarify_chat_file())
    print(f"wrote {clarify_chat_file()}")
