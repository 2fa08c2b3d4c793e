"""The files a user or a packager looks for at the root: the licence and the citation, consistent with pyproject."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_the_licence_file_is_the_mit_licence_pyproject_declares():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert pyproject()["license"] == {"text": "MIT"}
    assert text.startswith("MIT License") and "Copyright (c)" in text and "the sr3 authors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def test_the_citation_file_cites_this_version_and_the_search_r3_paper():
    yaml = pytest.importorskip("yaml")
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert citation["version"] == pyproject()["version"] and citation["license"] == "MIT"
    assert citation["authors"] and all("name" in a or "family-names" in a for a in citation["authors"])
    (paper,) = citation["references"]
    assert paper["title"].startswith("Search-R3") and paper["url"] == "https://arxiv.org/abs/2510.07048"
    assert paper["doi"] == "10.48550/arXiv.2510.07048" and paper["year"] == 2025
