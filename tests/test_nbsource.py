"""Stored notebooks equal what their percent sources build (no hand edits drift apart)."""

from pathlib import Path

from fusionlib.nbsource import build_all, parse_percent

ROOT = Path(__file__).resolve().parents[1]


def test_notebooks_in_sync_with_sources():
    stale = build_all(ROOT / "notebooks/src", ROOT / "notebooks", check=True)
    assert not stale, f"run `python -m fusionlib.nbsource`: out of date {[p.name for p in stale]}"


def test_every_notebook_has_a_source():
    nbs = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    srcs = {p.stem for p in (ROOT / "notebooks/src").glob("[0-9][0-9]_*.py")}
    assert nbs == srcs


def test_parse_percent_cells():
    cells = parse_percent('# %% [markdown]\n# # Title\n# text\n\n# %% tags=["parameters"]\nprofile = "smoke"\n'
                          "# %%\nx = 1\n")
    assert [c["type"] for c in cells] == ["markdown", "code", "code"]
    assert cells[0]["source"] == "# Title\ntext"
    assert cells[1]["tags"] == ["parameters"] and cells[1]["source"] == 'profile = "smoke"'
