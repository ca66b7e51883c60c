"""What the library and the notebooks cite ships with them (issue #22, item 3).

The development notes on the authors' code (``authors_code.md``) are not part of the repository, so no
shipped file may cite them; the facts live in ``notebooks/released_code.md``, and every
``released_code.md §Section`` citation must name one of its ``##`` headings.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "notebooks" / "released_code.md"
PAPERS = ("AIDFusion", "SIBA", "LKC-FUNet", "RPFNet", "DMNet")

#: ``released_code.md`` followed (after optional closing backticks) by ``§Name``.
CITATION = re.compile(r"released_code\.md`{0,2}\s*§\s*([A-Za-z][A-Za-z0-9-]*)")


def shipped_files() -> list[Path]:
    """Tracked files under fusionlib/ and notebooks/ (sources, notebooks, docs) and README.md."""
    try:
        out = subprocess.run(["git", "ls-files", "fusionlib", "notebooks", "README.md"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
        files = [ROOT / p for p in out]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the folders
        files = [p for d in ("fusionlib", "notebooks") for p in (ROOT / d).rglob("*") if p.is_file()]
        files.append(ROOT / "README.md")
    return [p for p in files if p.suffix in {".py", ".ipynb", ".md"} and p.exists()]


def text_of(path: Path) -> str:
    """The file's text; for a notebook, the sources of its cells (so JSON escaping does not matter)."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix != ".ipynb":
        return raw
    cells = json.loads(raw)["cells"]
    return "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells)


def headings() -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^## (.+)$", DOC.read_text(encoding="utf-8"), re.M)}


def test_doc_has_a_section_per_paper():
    assert DOC.exists()
    missing = [p for p in PAPERS if p not in headings()]
    assert not missing, f"released_code.md lacks sections {missing}"


@pytest.mark.parametrize("name", ["authors_code.md"])
def test_no_shipped_file_cites_the_development_notes(name: str):
    files = shipped_files()
    assert any(p.name == "siba.py" for p in files)  # the scan really sees the library
    offenders = [str(p.relative_to(ROOT)) for p in files if name in text_of(p)]
    assert not offenders, f"{name} is not shipped; cite notebooks/released_code.md instead: {offenders}"


def test_every_citation_names_an_existing_section():
    known = headings()
    cites = [(str(p.relative_to(ROOT)), m.group(1)) for p in shipped_files()
             for m in CITATION.finditer(text_of(p))]
    assert len(cites) >= 10  # the library and two notebooks cite it; an empty scan would pass vacuously
    bad = [(f, s) for f, s in cites if s not in known]
    assert not bad, f"citations of sections that released_code.md does not have: {bad}"


def test_citation_pattern():
    """The pattern reads the section from the forms used in docstrings, comments and markdown."""
    for form in ("``notebooks/released_code.md`` §SIBA", "(notebooks/released_code.md §SIBA)",
                 "`notebooks/released_code.md` §SIBA."):
        assert [m.group(1) for m in CITATION.finditer(form)] == ["SIBA"]
    assert [m.group(1) for m in CITATION.finditer("released_code.md §LKC-FUNet:")] == ["LKC-FUNet"]
