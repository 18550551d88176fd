"""The report shows the simulated user's persona: in the browser data and on the page."""

from __future__ import annotations

from pathlib import Path

import pytest

from collabrl.personas import load_personas
from collabrl.report import build_report
from collabrl.report.data import load_run

from .conftest import read_lines


@pytest.fixture(scope="module")
def persona_runs(scripted_runs_with) -> dict[str, Path]:
    """The scripted config's runs with the default personas."""
    return scripted_runs_with("user.personas=default")


def test_browser_data_carries_the_persona(persona_runs):
    personas = load_personas("default")
    for kind, folder in persona_runs.items():
        run = load_run(folder)
        for c in run["conversations"]:
            expected = personas.pick(c["task"], c.get("seed") or 0)
            assert c["persona"] == expected.name, kind
            assert c["persona_traits"]["verbosity"] == expected.verbosity


@pytest.mark.slow
def test_the_page_filters_by_persona_and_shows_its_attributes(browser, persona_runs, tmp_path):
    report = build_report([persona_runs["eval"]], tmp_path / "report.html")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(report.resolve().as_uri())
    page.wait_for_function("window.__reportReady === true")
    records = read_lines(persona_runs["eval"] / "conversations.jsonl")
    name = records[0]["persona"]["name"]
    page.locator('select[data-filter="persona"]').select_option(name)
    rows = page.locator(".conv-row")
    assert rows.count() == sum(r["persona"]["name"] == name for r in records)
    rows.first.click()
    view = page.locator(".conv-detail .persona")
    assert f"persona: {name}" in view.inner_text()
    assert records[0]["persona"]["summary"].split()[0] in view.inner_text()
    view.locator("summary").click()
    assert records[0]["persona"]["patience"] in view.locator("dl").inner_text()
    page.close()
    assert errors == []
