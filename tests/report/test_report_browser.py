"""The HTML report in a real headless Chromium: numbers, interactions, escaping, speed.

Needs Debian's chromium (``apt-get install -y chromium``) and the Python ``playwright`` package
(``pip install playwright``, in the dev extra). ``playwright install`` is not needed: the system
browser is launched directly. Without either, these tests are skipped with that reason.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from collabrl.report import build_report

from .conftest import append_jsonl, read_lines

ARTIFACTS = Path(__file__).parent / "artifacts"

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is missing: pip install playwright (dev extra)"
)
pytestmark = pytest.mark.slow


@pytest.fixture
def open_report(browser):
    """Opens a report file; fails the test on any console error or uncaught exception."""
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def load(path: Path):
        page.goto(path.resolve().as_uri())
        page.wait_for_function("window.__reportReady === true")
        return page

    yield load
    page.close()
    assert errors == []


def show_tab(page, index: int):
    page.locator("#tabs button").nth(index).click()
    return page.locator(".run:not([hidden])")


@pytest.fixture
def report(injected_runs, tmp_path) -> Path:
    return build_report(
        [injected_runs["generate"], injected_runs["eval"]], tmp_path / "report.html"
    )


def test_summary_table_shows_summary_json(open_report, report, injected_runs):
    page = open_report(report)
    run = show_tab(page, 1)
    summary = json.loads((injected_runs["eval"] / "summary.json").read_text())
    columns = [("score", 1), ("tokens_k", 2), ("itr", 1)]
    for system in ("base", "proactive"):
        cells = run.locator(f'.summary-table tbody tr[data-system="{system}"] td')
        texts = cells.all_inner_texts()
        expected = [summary[g]["systems"][system][f] for g in summary for f, _ in columns]
        digits = [d for _ in summary for _, d in columns]
        assert len(texts) == len(expected)
        for text, est, d in zip(texts, expected, digits):
            if est is None:
                assert text.strip() == "–"
            else:
                assert f"{est['mean']:.{d}f}" in text
                assert f"[{est['low']:.{d}f}, {est['high']:.{d}f}]" in text
    assert run.locator(".paired-table .badge.noise").count() == sum(
        d["within_noise"] for g in summary.values() for d in g["paired"]
    )
    assert run.locator("svg.chart").count() >= 4


def test_the_page_opens_on_the_headline_above_the_runs(open_report, report, injected_runs):
    page = open_report(report)
    headline = page.locator("#headline")
    assert headline.is_visible()
    summary = json.loads((injected_runs["eval"] / "summary.json").read_text())
    # above the tabs, so above every run's conversation browser
    assert headline.bounding_box()["y"] < page.locator("#tabs").bounding_box()["y"]
    charts = headline.locator("svg.chart")
    assert charts.count() == 2 * len(summary)  # systems with intervals, differences vs base
    assert headline.locator("svg.chart .bar").count() == sum(
        len(g["systems"]) for g in summary.values()
    )
    differences = [d for g in summary.values() for d in g["paired"] if d["figure"] == "score"]
    items = headline.locator(".headline-difference").all_inner_texts()
    assert len(items) == len(differences)
    for text, d in zip(items, differences):
        assert f"[{d['low']:.1f}, {d['high']:.1f}]" in text
        assert ("within noise" in text) == d["within_noise"]


def test_expanding_a_candidate_shows_its_futures(open_report, report, injected_runs):
    page = open_report(report)
    run = show_tab(page, 0)
    run.locator(".conv-row").first.click()
    chosen = run.locator(".candidate.chosen").first
    assert chosen.locator(".future").count() == 0  # built on demand
    chosen.locator("details.futures > summary").click()
    futures = chosen.locator(".future")
    turn = read_lines(injected_runs["generate"] / "turns.jsonl")[0]
    assert futures.count() == len(turn["candidates"][turn["chosen"]]["futures"])
    assert futures.first.is_visible()
    futures.first.locator("summary").click()
    body = futures.first.locator(".future-body")
    assert body.locator(".msg").count() >= 1
    assert "interactivity" in body.locator("table.scores").inner_text()
    assert run.locator(".candidate").count() > run.locator(".candidate.chosen").count()


def test_an_opened_section_has_its_content_at_once(open_report, report, injected_runs):
    """Opening a lazily built section fills it before the click returns, in the same task: the
    browser's "toggle" event comes later, as a task of its own, and in between the section would
    be open and empty (the race that failed the two tests above and below with Chromium 156)."""
    page = open_report(report)
    show_tab(page, 0).locator(".conv-row").first.click()
    seen = page.evaluate("""() => {
      const futures = document.querySelector(".run:not([hidden]) .candidate.chosen details.futures");
      futures.querySelector("summary").click();
      const future = futures.querySelector(".future details");
      future?.querySelector("summary").click();
      return {open: futures.open, futures: futures.querySelectorAll(".future").length,
              messages: future ? future.querySelectorAll(".msg").length : 0};
    }""")
    turn = read_lines(injected_runs["generate"] / "turns.jsonl")[0]
    assert seen["open"] and seen["futures"] == len(turn["candidates"][turn["chosen"]]["futures"])
    assert seen["messages"] >= 1


def test_search_and_filters_narrow_the_list(open_report, report, injected_runs):
    page = open_report(report)
    run = show_tab(page, 1)
    records = read_lines(injected_runs["eval"] / "conversations.jsonl")
    count = run.locator(".conv-count")
    assert count.inner_text() == f"{len(records)} of {len(records)} conversations"
    run.locator(".conv-search").fill("poem-autumn")
    expected = sum(r["task_id"] == "poem-autumn" for r in records)
    sync_api.expect(count).to_have_text(f"{expected} of {len(records)} conversations")
    rows = run.locator(".conv-row")
    assert rows.count() == expected
    assert all("poem-autumn" in t for t in rows.all_inner_texts())
    run.locator('select[data-filter="system"]').select_option("proactive")
    both = sum(r["task_id"] == "poem-autumn" and r["system"] == "proactive" for r in records)
    sync_api.expect(count).to_have_text(f"{both} of {len(records)} conversations")


def test_scripts_in_data_are_shown_as_text(open_report, report):
    page = open_report(report)
    run = show_tab(page, 1)
    run.locator(".conv-search").fill("pwned")
    sync_api.expect(run.locator(".conv-row")).to_have_count(1)
    run.locator(".conv-row").first.click()
    assert "<script>window.__pwned=1</script>" in run.locator(".conv-detail").inner_text()
    run = show_tab(page, 0)
    run.locator(".conv-search").fill("injected")
    sync_api.expect(run.locator(".conv-row")).to_have_count(1)
    run.locator(".conv-row").first.click()
    candidate = run.locator(".candidate").first
    assert "<script>window.__pwned=1</script>" in candidate.locator(".cand-text").inner_text()
    candidate.locator("details.rationale-box > summary").click()
    candidate.locator("details.futures > summary").click()
    candidate.locator(".future summary").first.click()
    assert "judge <script>" in candidate.inner_text()
    assert "future <script>" in candidate.inner_text()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator(".conv-detail script, .conv-detail img").count() == 0


def test_screenshots_for_humans(open_report, report, tmp_path):
    page = open_report(report)
    ARTIFACTS.mkdir(exist_ok=True)
    for index, name in ((1, "report-eval.png"), (0, "report-generate.png")):
        run = show_tab(page, index)
        run.locator(".conv-row").first.click()
        if index == 0:
            run.locator(".candidate.chosen details.futures > summary").first.click()
            run.locator(".candidate.chosen .future summary").first.click()
        shot = tmp_path / name
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        shutil.copy(shot, ARTIFACTS / name)


def scaled_runs(runs: dict[str, Path], folder: Path, conversations: int) -> list[Path]:
    """The real runs with their conversations repeated under new ids, ``conversations`` each."""
    eval_dir, gen_dir = folder / "eval", folder / "generate"
    eval_dir.mkdir(parents=True)
    gen_dir.mkdir()
    shutil.copy(runs["eval"] / "summary.json", eval_dir)
    records = read_lines(runs["eval"] / "conversations.jsonl")
    turns = read_lines(runs["generate"] / "turns.jsonl")
    finished = read_lines(runs["generate"] / "conversations.jsonl")
    for i in range(conversations // len(records)):
        append_jsonl(
            eval_dir / "conversations.jsonl",
            [{**r, "task_id": f"{r['task_id']}-{i}"} for r in records],
        )
    for i in range(conversations // len(finished)):
        append_jsonl(
            gen_dir / "turns.jsonl",
            [{**t, "conversation_id": f"{t['conversation_id']}-{i}"} for t in turns],
        )
        append_jsonl(
            gen_dir / "conversations.jsonl",
            [{**c, "conversation_id": f"{c['conversation_id']}-{i}"} for c in finished],
        )
    return [gen_dir, eval_dir]


def test_thousands_of_conversations_open_fast(open_report, scripted_runs, tmp_path):
    folders = scaled_runs(scripted_runs, tmp_path / "big", conversations=3000)
    report = build_report(folders, tmp_path / "big.html")
    start = time.perf_counter()
    page = open_report(report)
    page.locator(".run:not([hidden]) .conv-row").first.wait_for()
    first_page = time.perf_counter() - start
    # About 1 s on an idle 2-core machine; the bound leaves room for a CI machine under load.
    assert first_page < 8, f"first page took {first_page:.1f}s"
    run = page.locator(".run:not([hidden])")
    assert run.locator(".conv-count").inner_text() == "3000 of 3000 conversations"
    assert run.locator(".conv-row").count() == 50  # one page in the DOM, not 3,000 rows
    start = time.perf_counter()
    run = show_tab(page, 1)
    run.locator(".conv-search").fill("math-apples-99")
    sync_api.expect(run.locator(".conv-count")).to_have_text("4 of 3000 conversations")
    searched = time.perf_counter() - start
    assert searched < 5, f"eval tab and search took {searched:.1f}s"
    print(f"3,000 conversations: first page {first_page:.2f}s, eval tab + search {searched:.2f}s")
