"""The config reference documents every config field, and README.md holds its latest version."""

import difflib
import types
from pathlib import Path
from typing import Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from collabrl.cli import main
from collabrl.config import Config, RewardConfig
from collabrl.config_reference import END, START, WRITE_COMMAND, render, replace_section

README = Path(__file__).resolve().parents[1] / "README.md"


def _is_model(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _models(tp) -> list[type[BaseModel]]:
    return [tp] if _is_model(tp) else [m for arg in get_args(tp) for m in _models(arg)]


def _alternatives(tp) -> list:
    union = get_origin(tp) in (Union, types.UnionType)
    return [a for a in (get_args(tp) if union else (tp,)) if a is not type(None)]


def _expected_keys(model: type[BaseModel], prefix: str = ""):
    """Every key a config can set, as the reference names it (list entries by bare name)."""
    for name, info in model.model_fields.items():
        key, annotation = prefix + name, info.annotation
        alternatives = _alternatives(annotation)
        if get_origin(annotation) is dict and _models(annotation):
            for value_model in _models(annotation):
                yield from _expected_keys(value_model, f"{key}.<name>.")
        elif len(alternatives) == 1 and _is_model(alternatives[0]):
            yield from _expected_keys(alternatives[0], f"{key}.")
        else:
            yield key
            for entry in _models(annotation):
                yield from _expected_keys(entry, "")


def test_readme_holds_the_generated_reference():
    readme = README.read_text()
    assert START in readme and END in readme, f"README.md lacks the {START} / {END} markers"
    expected = replace_section(readme, render())
    diff = "".join(
        difflib.unified_diff(
            readme.splitlines(True), expected.splitlines(True), "README.md", "generated", n=0
        )
    )
    assert expected == readme, (
        f"README.md's config reference is out of date: run `{WRITE_COMMAND}`\n{diff[:4000]}"
    )


def test_every_config_field_has_a_row():
    reference = render()
    missing = [key for key in _expected_keys(Config) if f"| `{key}` |" not in reference]
    assert not missing, f"fields without a row in the reference: {missing}"


def test_a_row_shows_type_default_and_description():
    description = RewardConfig.model_fields["samples"].description
    assert f"| `reward.samples` | `int >= 1` | `3` | {description} |" in render()


def test_required_fields_factory_defaults_and_metric_options_are_shown():
    reference = render()
    assert (
        '| `roles.<name>.kind` | `"openai" \\| "anthropic" \\| "hf_local" \\| "scripted"` '
        "| required |" in reference
    )
    assert "| `[{name: base}, {name: proactive, proactive: true}]` |" in reference
    assert "| `token_efficiency` | `form: penalty`, `lam: 0.0005` |" in reference


def test_cli_prints_the_reference(capsys):
    assert main(["config", "reference"]) == 0
    assert capsys.readouterr().out == render()


def test_cli_writes_between_the_markers_only(tmp_path):
    target = tmp_path / "README.md"
    target.write_text(f"# title\n\nbefore\n\n{START}\nold\n{END}\n\nafter\n")
    assert main(["config", "reference", "--write", str(target)]) == 0
    written = target.read_text()
    assert written == f"# title\n\nbefore\n\n{START}\n\n{render().strip()}\n\n{END}\n\nafter\n"
    assert main(["config", "reference", "--write", str(target)]) == 0
    assert target.read_text() == written


@pytest.mark.parametrize("text", ["# no markers\n", f"{END}\nreversed\n{START}\n"])
def test_cli_refuses_a_file_without_markers(tmp_path, capsys, text):
    target = tmp_path / "README.md"
    target.write_text(text)
    assert main(["config", "reference", "--write", str(target)]) == 2
    assert target.read_text() == text
    out = " ".join(capsys.readouterr().out.split())
    assert "error:" in out and START in out and END in out
