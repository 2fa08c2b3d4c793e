"""The results pages agree with the committed JSON that measured them, and the docs speak to users.

Every table of docs/results.md, docs/results-archive.md and the README's results table, and every number
marked in their sentences, is rendered by scripts/render_results.py from docs/results/ and
benchmarks/results/; here its ``--check`` must pass, so editing a number by hand (or committing new JSON
without rendering) fails the tests."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PAGES = ("README.md", "docs/results.md", "docs/results-archive.md")


@pytest.fixture(scope="module")
def render():
    spec = importlib.util.spec_from_file_location("render_results", ROOT / "scripts" / "render_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pages_agree_with_their_json(render, capsys):
    assert render.main(["--check"]) == 0, capsys.readouterr().err


def test_a_number_edited_by_hand_is_named(render):
    text = (ROOT / "README.md").read_text()
    table = text.index("<!-- table: readme-main-job -->")
    cell = text.index("| 0.", table)
    edited = text[:cell] + "| 0.999" + text[cell + len("| 0.xxx"):]
    _, changed = render.render_page(edited, "README.md")
    assert changed == ["README.md: table 'readme-main-job'"]

    value = text.index("<!-- value: two-turn-gain -->") + len("<!-- value: two-turn-gain -->")
    _, changed = render.render_page(text[:value] + "+0.1" + text[value + 4:], "README.md")
    assert len(changed) == 1 and changed[0].startswith("README.md: value 'two-turn-gain'")


def test_an_unknown_table_is_refused(render):
    with pytest.raises(SystemExit, match="unknown table 'no-such-table'"):
        render.render_page("<!-- table: no-such-table -->\n<!-- /table -->\n", "docs/results.md")


def marked_spans(text: str, render) -> list[tuple[int, int]]:
    return [match.span() for match in render.TABLE.finditer(text)]


@pytest.mark.parametrize("page", ["docs/results.md", "docs/results-archive.md"])
def test_every_table_row_of_a_results_page_is_rendered(render, page):
    """A table typed by hand would not be checked: every table line of the results pages lies between
    markers (the archive's list of raw-row folders, which holds no measurement, excepted)."""
    text = (ROOT / page).read_text()
    spans = marked_spans(text, render)
    unrendered = []
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("|") and not any(start <= offset < end for start, end in spans):
            if re.search(r"\d\.\d", line):  # a measured number
                unrendered.append(line.strip())
        offset += len(line)
    assert unrendered == []


@pytest.mark.parametrize("page", RESULTS_PAGES)
def test_no_line_starts_with_a_value_marker(page):
    """Markdown reads a line that starts with an HTML comment as an HTML block, which cuts the sentence in two."""
    assert [line for line in (ROOT / page).read_text().splitlines() if line.lstrip().startswith("<!-- value:")] == []


def test_the_readme_quotes_its_results_through_the_renderer():
    text = (ROOT / "README.md").read_text()
    assert "<!-- table: readme-main-job -->" in text
    for name in ("chosen", "two-turn-gain", "semanlink-baselines", "stage-minutes"):
        assert f"<!-- value: {name}" in text, name


USER_PAGES = sorted({*ROOT.glob("docs/*.md"), *ROOT.glob("docs/api/*.md"), ROOT / "README.md", ROOT / "CHANGELOG.md"})
PROCESS_WORDS = re.compile(
    r"\bissue\s*#?\d+|\bissue's\b|(?<![\w/])#\d+\b|\b(?:this|next|that|earlier|later|previous|a later|an earlier)"
    r" (?:round|session)s?\b|\bbefore this round\b|\blevers?\b", re.I)


@pytest.mark.parametrize("page", USER_PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_issue_numbers_or_process_words(page):
    """The docs speak to users: no tracker numbers, no words about how the work was scheduled."""
    found = [f"{number}: {line.strip()}" for number, line in enumerate(page.read_text().splitlines(), 1)
             if PROCESS_WORDS.search(line)]
    assert found == []
