"""``make site``: the executed notebooks as an offline HTML site, checked the way a reader meets it.

Fast tests build a site from a small hand-made "executed" notebook. The ``notebooks`` tests execute
``notebooks/00_foundations.ipynb`` at ``smoke`` once (module fixture), build the site from it, check
that no page fetches anything from the network, and (``site`` marker) open ``index.html`` in headless
Chromium, follow every link, check pages load and images render, and save screenshots.

Set ``FUSIONLIB_SITE_RUNS=<folder>`` to build from an existing ``make run`` folder instead of
executing the notebook (quicker when iterating on the site itself).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import nbformat
import pytest

from fusionlib import site

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("FUSIONLIB_CHROMIUM", "/usr/bin/chromium")
INSTALL_HINT = ("the site browser test needs Chromium and the playwright Python package: "
                "`apt-get install -y chromium` (Debian; gives /usr/bin/chromium, or set FUSIONLIB_CHROMIUM) "
                "and "
                "`.venv/bin/python -m pip install -r requirements-site.txt` (no `playwright install` needed)")


# --------------------------------------------------------------------------- helpers

class _Refs(HTMLParser):
    """Every (tag, attribute, value) for src/href/srcset/data attributes of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k in ("src", "href", "srcset", "data") and v is not None:
                self.refs.append((tag, k, v.strip()))


def page_refs(path: Path) -> list[tuple[str, str, str]]:
    p = _Refs()
    p.feed(path.read_text(encoding="utf-8"))
    return p.refs


def fetched_remote(path: Path) -> list[str]:
    """References the browser would fetch from the network (anchors <a href> are only links)."""
    return [f"<{t} {k}={v[:80]}>" for t, k, v in page_refs(path)
            if t != "a" and (v.lower().startswith(("http://", "https://", "//")))]


def _chromium():
    """``(browser, playwright)``: the system Chromium, headless, with every network request refused."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found; {INSTALL_HINT}", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the playwright package is not installed; {INSTALL_HINT}", pytrace=False)
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                 args=["--no-sandbox", "--allow-file-access-from-files"])
    return browser, pw


def _keep(shots: list[Path]) -> None:
    """Copy screenshots to ``$FUSIONLIB_SITE_SHOTS`` (optional) to look at them."""
    keep = os.environ.get("FUSIONLIB_SITE_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for s in shots:
            shutil.copyfile(s, Path(keep) / s.name)


def _png(w: int = 6, h: int = 4) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


def make_fake_run(runs: Path, stem: str = "99_synthetic") -> Path:
    """A small 'executed' notebook with what real runs hold: a plot, a tqdm widget, results, figures."""
    d = runs / stem
    d.mkdir(parents=True)
    png = base64.b64encode(_png()).decode()
    nb = nbformat.v4.new_notebook()
    stdout = lambda text: nbformat.v4.new_output("stream", name="stdout", text=text)  # noqa: E731
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 99 · Synthetic run\n\n"
                                      "> A hand-made notebook with `code` and *emphasis* in its intro.\n\n"
                                      "The loss is $\\mathcal{L} = \\|F - I\\|_1$.\n\n$$a^2 + b^2 = c^2$$"),
        nbformat.v4.new_code_cell("S = setup(profile=profile)", outputs=[stdout(
            "profile=smoke (CPU / CI: a few steps)\ndevice=cpu [x86_64], torch threads=2, seed=0\n")]),
        nbformat.v4.new_code_cell("show(TinyFuse)", outputs=[nbformat.v4.new_output(
            "execute_result", execution_count=3,
            data={"text/html": "<pre>class TinyFuse:\n    LISTING_BODY\n</pre>",
                  "text/plain": "class TinyFuse:\n    pass\n"})]),
        nbformat.v4.new_markdown_cell("### Exercise 1 · the `forward` of TinyFuse\n\nWrite $y = Wx$."),
        nbformat.v4.new_code_cell("from fusionlib.models import TinyFuse as MyTinyFuse  # exercise: forward",
                                  metadata={"tags": ["exercise"]}),
        nbformat.v4.new_code_cell("check_exercise(MyTinyFuse, TinyFuse)", metadata={"tags": ["check"]},
                                  outputs=[stdout("✓ MyTinyFuse matches the reference TinyFuse on inputs (2, 2)\n")]),
        nbformat.v4.new_code_cell("display(Markdown(text))", outputs=[
            nbformat.v4.new_output("display_data", data={"text/markdown": "measured: $\\alpha = 0.5$",
                                                         "text/plain": "<Markdown>"})]),
        nbformat.v4.new_code_cell("plot()", outputs=[
            nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}),
            nbformat.v4.new_output("display_data", data={
                "application/vnd.jupyter.widget-view+json": {"model_id": "box", "version_major": 2,
                                                             "version_minor": 0},
                "text/plain": "epoch 1/2:   0%|          | 0/20"}),
            nbformat.v4.new_output("display_data", data={
                "application/vnd.jupyter.widget-view+json": {"model_id": "gone", "version_major": 2,
                                                             "version_minor": 0},
                "text/plain": "VBox()"}),
        ]),
        nbformat.v4.new_markdown_cell("### Questions for a reading group\n\n1. Why $\\max$?\n2. Why not?"),
    ]

    def model(name: str, **state: object) -> dict:
        return {"model_name": name, "model_module": "@jupyter-widgets/controls",
                "model_module_version": "2.0.0", "state": state}

    state = {"box": model("HBoxModel", children=["IPY_MODEL_desc", "IPY_MODEL_bar", "IPY_MODEL_post"]),
             "desc": model("HTMLModel", value="epoch 1/2: 100%"),
             "bar": model("FloatProgressModel", min=0.0, max=20.0, value=20.0),
             "post": model("HTMLModel", value=" 20/20 [00:03&lt;00:00]")}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json":
                              {"version_major": 2, "version_minor": 0, "state": state}}
    nb.metadata["papermill"] = {"exception": None}
    nbformat.write(nb, d / f"{stem}.ipynb")
    results = {"meta": {"profile": "smoke", "device": "cpu", "seed": 0, "versions": {"torch": "2.x"}},
               "budget": {"crop": 64, "steps": 20}, "final_loss": 0.123456789, "curve": [1.0, 0.5, 0.25],
               "evaluated_network": "this run's smoke network (a few steps)", "seconds": {"total": 12.4},
               "metrics": {"msrs/TinyFuse": {"EN": 6.5, "SSIM": 0.9},
                           "msrs/average": {"EN": 6.1, "SSIM": 0.8}}}
    (d / "results.json").write_text(json.dumps(results))
    (d / "loss.png").write_bytes(_png(40, 30))
    (d / "sub").mkdir()
    (d / "sub" / "curve.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30">'
                                         '<rect width="40" height="30" fill="teal"/></svg>')
    (d / ".hidden.png").write_bytes(_png())
    return d


# --------------------------------------------------------------------------- fast tests (no execution)

def test_flatten_and_tables():
    rows = dict(site.flatten({"a": {"b": 1, "c": {"d": 2.5}}, "e": [{"f": 1}], "g": [1, 2]}))
    assert rows == {"a.b": 1, "a.c.d": 2.5, "e[0].f": 1, "g": [1, 2]}
    out = site.results_html({"meta": {"profile": "smoke"}, "budget": {"crop": 64}, "loss": 0.123456789,
                             "metrics": {"x/TinyFuse": {"EN": 6.5, "SSIM": 0.9}, "x/avg": {"EN": 6.1}}})
    assert "<th>budget.crop</th><td>64</td>" in out and "<td>0.1235</td>" in out
    assert "<caption>metrics</caption>" in out and "<th>SSIM</th>" in out and "profile" not in out
    # the row lacking SSIM gets an empty cell, not a shifted one
    assert "<tr><th>x/avg</th><td>6.1</td><td></td></tr>" in out


def test_strip_remote_makes_default_nbconvert_output_offline(tmp_path: Path):
    from nbconvert import HTMLExporter

    nb_path = make_fake_run(tmp_path / "runs") / "99_synthetic.ipynb"
    page, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(nb_path, as_version=4))
    assert site.remote_refs(page), "nbconvert's lab template is expected to load require.js/MathJax online"
    cleaned = site.strip_remote(page)
    assert site.remote_refs(cleaned) == []
    assert "a^2 + b^2 = c^2" in cleaned  # TeX stays readable


class _Visible(HTMLParser):
    """The text a reader sees: everything outside <style>/<script> (tags dropped)."""

    def __init__(self) -> None:
        super().__init__()
        self.skip = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.skip += tag in ("style", "script")

    def handle_endtag(self, tag: str) -> None:
        self.skip -= tag in ("style", "script")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def visible_text(page: str) -> str:
    p = _Visible()
    p.feed(page)
    return "".join(p.parts)


def test_build_from_a_fake_run(tmp_path: Path):
    make_fake_run(tmp_path / "runs")
    index = site.build_site(tmp_path / "runs", tmp_path / "site", verbose=False,
                            weights_dir=tmp_path / "no_weights", commit="abc1234def")
    root = index.parent
    page = root / "99_synthetic.html"
    assert page.is_file() and (root / "99_synthetic" / "results.json").is_file()
    assert (root / "99_synthetic/figures/loss.png").is_file()
    assert (root / "99_synthetic/figures/sub/curve.svg").is_file()
    assert not list(root.rglob(".hidden.png"))
    for p in (index, page):
        assert fetched_remote(p) == [], p
    text = page.read_text()
    assert '<progress max="20" value="20">' in text and "epoch 1/2: 100%" in text  # widget snapshot
    assert "open the notebook in Jupyter" in text  # widget with no saved state
    assert "<title>99 · Synthetic run</title>" in text
    # formulas are MathML (cells, exercise text, a Markdown output), never raw TeX between dollars
    seen = visible_text(text)
    assert "$" not in seen and "\\mathcal" not in seen, [ln for ln in seen.splitlines() if "$" in ln][:3]
    assert text.count("<math ") == 5 and text.count('display="block"') == 1
    assert "<mi>ℒ</mi>" in text  # \mathcal{L}
    # the banner: profile, device, date, commit, and the network the run evaluated / weights/ ships
    banner = text[text.index('aria-label="run banner"'):]
    banner = banner[:banner.index("</div></div>") if "</div></div>" in banner else 2000]
    for bit in ("<b>smoke</b>", "cpu (x86_64)", "abc1234def", "Smoke run", "this run's smoke network (a few steps)"):
        assert bit in banner, bit
    # the show() listing and the exercise section (heading, exercise cell, check) fold, closed
    folds = re.findall(r"<details[^>]*>", text)
    assert folds == ['<details class="fl-fold">'] * 2
    first, second = text.index('<details class="fl-fold">'), text.rindex('<details class="fl-fold">')
    assert first < text.index("LISTING_BODY") < text.index("</details>") < second
    ex = text[second:text.index("</details>", second)]
    assert "Exercise 1 · the <code>forward</code> of TinyFuse" in ex and "MyTinyFuse matches the reference" in ex
    assert "check_exercise" in ex and "# exercise: forward" in ex
    assert text.index("measured:") > text.index("</details>", second)  # the cells after it are not folded
    # the index: a banner, what to look at (numbers by name), questions, all numbers folded
    idx = index.read_text()
    hrefs = {v for t, k, v in page_refs(index) if t == "a"}
    assert {"99_synthetic.html", "99_synthetic/results.json", "#99_synthetic-results",
            "99_synthetic/figures/loss.png", "99_synthetic/figures/sub/curve.svg"} <= hrefs
    assert 'aria-label="run banner"' in idx and "abc1234def" in idx
    assert "<code>code</code>" in idx and "<em>emphasis</em>" in idx and "*emphasis*" not in idx
    assert "<dt>final loss</dt><dd>0.1235</dd>" in idx and "<dt>run time of the notebook (s)</dt><dd>12</dd>" in idx
    assert "<dt>network the figures show</dt><dd>this run&#x27;s smoke network (a few steps)</dd>" in idx
    assert "budget.crop" not in idx[:idx.index('id="99_synthetic-results"')]  # no key dump up front
    assert '<details class="more" id="99_synthetic-results">' in idx and "<caption>metrics</caption>" in idx
    assert "Questions for a reading group (2)" in idx and "<math " in idx and "$" not in visible_text(idx)


def test_formula_that_does_not_parse_shows_its_source_not_dollars():
    out = site.tex_to_html("a^{")
    assert out.startswith('<span class="fl-tex"') and "<code>a^{</code>" in out
    assert site.tex_to_html("x", display=True).startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" '
                                                         'display="block">')
    assert site._latex_output_html("$$x^2$$").count('display="block"') == 1
    assert site.markdown_html("cost $\\alpha$ and **this**", inline=True).startswith("cost <math ")


def test_folds_exercises_without_a_heading_and_not_plt_show():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## 3 · Training\n\n### Exercise later in the cell"),
                nbformat.v4.new_code_cell("plt.show()\nfig.show()"),
                nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["exercise"]}),
                nbformat.v4.new_code_cell("check()", metadata={"tags": ["check"]}),
                nbformat.v4.new_code_cell("nb.show(diils.level_weights)")]
    assert site.mark_folds(nb) == 2
    opened = [i for i, c in enumerate(nb.cells) if c.metadata.get("fusionlib_fold_open")]
    closed = [i for i, c in enumerate(nb.cells) if c.metadata.get("fusionlib_fold_close")]
    assert opened == [2, 4] and closed == [3, 4]
    assert "<code>diils.level_weights</code>" in nb.cells[4].metadata["fusionlib_fold_open"]
    # a check that raised says so on the closed fold
    nb.cells[3].outputs = [nbformat.v4.new_output("error", ename="LabCheckError", evalue="no", traceback=[])]
    for c in nb.cells:
        c.metadata.pop("fusionlib_fold_open", None)
    site.mark_folds(nb)
    assert "raised an error" in nb.cells[2].metadata["fusionlib_fold_open"]
    assert "raised an error" not in nb.cells[4].metadata["fusionlib_fold_open"]


def test_an_exercise_fold_keeps_its_hints():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("### Exercise · the coupling (Eq. 2)"),
                nbformat.v4.new_markdown_cell("<details><summary>Hint 1</summary>no answer</details>",
                                              metadata={"tags": ["hint"]}),
                nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["exercise"]}),
                nbformat.v4.new_code_cell("check()", metadata={"tags": ["check"]}),
                nbformat.v4.new_markdown_cell("**With your coupling.**")]
    assert site.mark_folds(nb) == 1
    assert nb.cells[0].metadata.get("fusionlib_fold_open") and nb.cells[3].metadata.get("fusionlib_fold_close")
    assert not nb.cells[4].metadata.get("fusionlib_fold_open")


def test_notebook_methods_match_the_registry():
    from fusionlib.methods import METHODS

    for stem, methods in site.NOTEBOOK_METHODS.items():
        if stem == "06_benchmark":
            assert set(methods) == {m for m, spec in METHODS.items() if spec.notebook}
        else:
            assert methods == tuple(m for m, spec in METHODS.items() if spec.notebook == stem), stem


def test_headlines_name_keys_the_notebooks_record():
    """Every HEADLINES path starts with a key the notebook writes (``RESULTS["key"]``), and its deeper keys
    appear in that notebook's source: a renamed key fails here instead of silently leaving the card."""
    for stem, spec in site.HEADLINES.items():
        src = (REPO / "notebooks" / "src" / f"{stem}.py").read_text()
        for path, name in spec:
            top, *rest = path.split(".")
            assert f'RESULTS["{top}"]' in src, f"{stem}: {path} ({name}) is not recorded"
            for key in rest:
                assert f'"{key}"' in src or f"{key}=" in src, f"{stem}: {path}: no key {key!r} in the source"
    rows = dict(site.headlines("00_foundations", {"final_loss": 0.5, "tinyfuse": {"params": 13137},
                                                  "seconds": {"total": 31.6}}))
    assert rows == {"final training loss": 0.5, "TinyFuse parameters": 13137, "run time of the notebook (s)": 32}
    assert site.headlines_html("00_foundations", {"tinyfuse": {"params": 13137}}).count("13,137") == 1


def test_banners_name_the_shipped_networks(tmp_path: Path):
    runs = tmp_path / "runs"
    make_fake_run(runs, stem="00_foundations")
    wd = tmp_path / "weights"
    wd.mkdir()
    (wd / "tinyfuse.pt").write_bytes(b"not read by the site")
    (wd / "MANIFEST.json").write_text(json.dumps({"schema": 1, "weights": {"tinyfuse": {
        "file": "tinyfuse.pt", "profile": "lab", "steps": 500, "device": "cpu", "notebook": "00_foundations"}}}))
    index = site.build_site(runs, tmp_path / "site", verbose=False, weights_dir=wd, commit="c0ffee")
    page = (index.parent / "00_foundations.html").read_text()
    assert "shipped weights/tinyfuse.pt (lab recipe, 500 steps on cpu)" in page
    idx = index.read_text()
    assert "<b>tinyfuse</b>: shipped weights/tinyfuse.pt" in idx
    assert "not shipped: rpfnet, siba, aidfusion, lkc_funet, dmnet" in idx
    # lab runs: a calmer banner, no smoke warning
    res = runs / "00_foundations" / "results.json"
    r = json.loads(res.read_text())
    r["meta"]["profile"] = "lab"
    res.write_text(json.dumps(r))
    nb_path = runs / "00_foundations" / "00_foundations.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[1].outputs = []
    nbformat.write(nb, nb_path)
    index = site.build_site(runs, tmp_path / "site", verbose=False, weights_dir=wd, commit="c0ffee")
    page = (index.parent / "00_foundations.html").read_text()
    assert 'class="fl-banner fl-lab"' in page and "Smoke run" not in page and "<b>lab</b>" in page


def test_banner_lists_a_network_once_and_cards_skip_empty_headlines():
    """06's banner named every network twice (evaluated and shipped, same line); its card printed
    "metrics undefined ...: []"."""
    label = "shipped weights/siba.pt (lab recipe, 500 steps on cpu)"
    info = site.RunInfo(profile="smoke", evaluated=[("average", "rule (no weights)"), ("siba", label)],
                        shipped=[("siba", label), ("rpfnet", "shipped weights/rpfnet.pt (lab recipe)"), ("dmnet", "")])
    nets = site._networks_html(info)
    assert nets.count(label) == 1 and nets.count("<li>") == 4, nets  # average, siba, rpfnet, dmnet (none)
    assert "<b>rpfnet</b> in <code>weights/</code>" in nets and "none shipped" in nets
    other = site.RunInfo(profile="smoke", evaluated=[("siba", "authors' released weights (SIBA_epoch60.pth)")],
                         shipped=[("siba", label)])
    assert site._networks_html(other).count("<li>") == 2  # a different network than the shipped one: both
    rows = dict(site.headlines("06_benchmark", {"evaluation": "smoke: 2 pairs", "undefined_metrics": []}))
    assert rows == {"what was evaluated": "smoke: 2 pairs"}
    rows = dict(site.headlines("06_benchmark", {"undefined_metrics": ["DMNet (CC)"]}))
    assert rows == {"metrics undefined for some method": ["DMNet (CC)"]}


def _table_run(runs: Path) -> tuple[str, str]:
    """A fake run whose notebook prints a pandas table (wide last column) with a prose paragraph after it,
    and a long prose line as its own output."""
    import pandas as pd

    d = make_fake_run(runs)
    nb_path = d / "99_synthetic.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    table = pd.DataFrame({f"metric_{i} ↑": [0.1234 * i, 5.0] for i in range(16)} | {"Nabf_argfix ↓": [0.0, 0.0]},
                         index=["Average", "SIBA (paper, 361 pairs, tang)"]).round(3).to_string()
    prose = "a sentence the notebook prints " * 12
    nb.cells.insert(2, nbformat.v4.new_code_cell("print(table)", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="== msrs · tang ==\n" + table + "\n\nnote: " + prose + "\n"),
        nbformat.v4.new_output("stream", name="stdout", text=prose + "\n")]))
    nbformat.write(nb, nb_path)
    return table, prose


def test_printed_tables_are_marked_not_to_wrap(tmp_path: Path):
    table, prose = _table_run(tmp_path / "runs")
    assert site.is_tabular(table) and not site.is_tabular(prose) and not site.is_tabular("a  b  c\n")
    index = site.build_site(tmp_path / "runs", tmp_path / "site", verbose=False, weights_dir=tmp_path / "none")
    text = (index.parent / "99_synthetic.html").read_text()
    outs = re.findall(r'<div class="jp-RenderedText jp-OutputArea-output( fl-table)?"[^>]*>(.*?)</div>', text, re.S)
    tables = [body for marked, body in outs if marked]
    assert len(tables) == 1 and len(outs) >= 3, outs  # the setup line, the table, the prose line
    # the table paragraph keeps its rows on one line; the note after it, in the same output, wraps
    assert re.fullmatch(r'<pre class="fl-nowrap">\n== msrs · tang ==\n[^<]*Nabf_argfix[^<]*</pre><pre>\n\nnote: [^<]*</pre>',
                        tables[0]), tables[0]
    assert ".fl-table pre.fl-nowrap{white-space:pre;" in text


@pytest.mark.site
def test_printed_table_rows_stay_on_one_line_in_chromium(tmp_path: Path):
    """In a narrow window the printed table scrolls sideways (each row one line, as printed), prose wraps."""
    table, prose = _table_run(tmp_path / "runs")
    index = site.build_site(tmp_path / "runs", tmp_path / "site", verbose=False, weights_dir=tmp_path / "none")
    browser, pw = _chromium()
    try:
        page = browser.new_context(viewport={"width": 700, "height": 800}).new_page()
        page.goto((index.parent / "99_synthetic.html").resolve().as_uri(), wait_until="load")
        got = page.evaluate("""(() => { const pre = document.querySelector('.fl-table pre.fl-nowrap');
            const lh = parseFloat(getComputedStyle(pre).lineHeight);
            const lines = p => p.getBoundingClientRect().height / lh;
            const note = document.querySelector('.fl-table pre:not(.fl-nowrap)');
            const prose = Array.from(document.querySelectorAll('.jp-RenderedText pre'))
                .find(p => p.innerText.startsWith('a sentence'));
            return [lines(pre), pre.scrollWidth > pre.clientWidth, lines(prose), lines(note),
                    note.scrollWidth > note.clientWidth + 1, document.documentElement.scrollWidth]; })()""")
        rows, scrolls, prose_lines, note_lines, note_scrolls, page_width = got
        assert round(rows) == len(table.splitlines()) + 1, got  # the title line + the table's rows
        assert scrolls and prose_lines >= 2 and note_lines >= 3 and not note_scrolls and page_width <= 700, got
    finally:
        browser.close()
        pw.stop()


@pytest.mark.site
def test_reader_sees_math_banner_and_closed_folds_in_chromium(tmp_path: Path):
    """The synthetic site in headless Chromium: formulas drawn as MathML (no ``$`` in the text a reader
    sees), the banner on top, the listing and the exercise closed until clicked; screenshots saved."""
    browser, pw = _chromium()
    make_fake_run(tmp_path / "runs")
    index = site.build_site(tmp_path / "runs", tmp_path / "site", verbose=False, weights_dir=tmp_path / "none")
    shots: list[Path] = []
    try:
        page = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
        page.goto((index.parent / "99_synthetic.html").resolve().as_uri(), wait_until="load")
        seen = page.evaluate("document.body.innerText")
        assert "$" not in seen and "Smoke run" in seen
        sizes = page.evaluate("Array.from(document.querySelectorAll('math')).map(m => m.getBoundingClientRect().width)")
        assert len(sizes) == 5 and min(sizes) > 3, sizes
        banner = page.evaluate("document.querySelector('.fl-banner').getBoundingClientRect().top")
        assert banner < 120, "the run banner is not at the top of the page"
        assert page.evaluate("document.querySelectorAll('details.fl-fold').length") == 2
        assert page.evaluate("document.querySelectorAll('details[open]').length") == 0
        assert "LISTING_BODY" not in seen and "check_exercise" not in seen
        shots.append(tmp_path / "synthetic_page.png")
        page.screenshot(path=str(shots[-1]), full_page=True)
        page.click("details.fl-fold >> nth=0 >> summary")
        assert "LISTING_BODY" in page.evaluate("document.body.innerText")
        page.goto(index.resolve().as_uri(), wait_until="load")
        seen = page.evaluate("document.body.innerText")
        assert "$" not in seen and "final loss" in seen and "budget.crop" not in seen
        shots.append(tmp_path / "synthetic_index.png")
        page.screenshot(path=str(shots[-1]), full_page=True)
    finally:
        browser.close()
        pw.stop()
    _keep(shots)


def test_rebuild_replaces_own_site_but_refuses_a_foreign_folder(tmp_path: Path):
    runs = tmp_path / "runs"
    make_fake_run(runs)
    out = tmp_path / "site"
    site.build_site(runs, out, verbose=False)
    (out / "stale.html").write_text("old")
    site.build_site(runs, out, verbose=False)
    assert not (out / "stale.html").exists() and (out / "index.html").is_file()
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing to replace"):
        site.build_site(runs, foreign, verbose=False)
    assert (foreign / "mine.txt").read_text() == "keep me" and not (foreign / "index.html").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"


def test_cli_says_run_make_run_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert site.main(["--runs", str(tmp_path / "nowhere"), "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "make run" in err
    (tmp_path / "empty" / "00_foundations").mkdir(parents=True)  # a folder but no executed notebook
    assert site.main(["--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and "make run" in err
    assert not (tmp_path / "site").exists()


# --------------------------------------------------------------------------- the real thing

@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory, smoke_run) -> tuple[Path, Path]:
    """(runs, site): 00_foundations's smoke run of this session (conftest.smoke_run: the run test_notebooks.py
    made, not a second one), or $FUSIONLIB_SITE_RUNS; then `fusionlib.site`."""
    tmp = tmp_path_factory.mktemp("site")
    runs = (Path(os.environ["FUSIONLIB_SITE_RUNS"]) if os.environ.get("FUSIONLIB_SITE_RUNS")
            else smoke_run(REPO / "notebooks" / "00_foundations.ipynb"))
    assert site.main(["--runs", str(runs), "--out", str(tmp / "site")]) == 0
    return runs, tmp / "site"


@pytest.mark.notebooks
def test_every_page_is_offline_and_indexed(built_site: tuple[Path, Path]):
    runs, root = built_site
    pages = sorted(root.glob("*.html"))
    executed = sorted(p.parent.name for p in runs.glob("[0-9][0-9]_*/[0-9][0-9]_*.ipynb")
                      if p.stem == p.parent.name)
    assert executed and [p.stem for p in pages if p.name != "index.html"] == executed
    for p in pages:
        assert fetched_remote(p) == [], f"{p.name} fetches from the network"
    index_links = {v for t, k, v in page_refs(root / "index.html") if t == "a"}
    for stem in executed:
        assert f"{stem}.html" in index_links
        figs = [f for f in (runs / stem).rglob("*") if f.suffix in (".png", ".svg")]
        for f in figs:
            rel = f"{stem}/figures/{f.relative_to(runs / stem).as_posix()}"
            assert rel in index_links and (root / rel).read_bytes() == f.read_bytes()
        assert f"{stem}/results.json" in index_links


def reader_view_problems(page, name: str) -> list[str]:  # noqa: ANN001 - a playwright Page
    """What a reader should not meet on a loaded page: no run banner, TeX left between ``$$`` (a formula
    not drawn), a source listing or exercise open by default, or a ``show(...)`` cell left unfolded."""
    out = []
    if not page.evaluate("(() => { const b = document.querySelector('.fl-banner');"
                         " return !!b && b.getBoundingClientRect().height > 20; })()"):
        out.append(f"{name}: no run banner")
    text = page.evaluate("document.body.innerText")
    if "$$" in text:
        out.append(f"{name}: raw TeX: {text[text.index('$$'):][:80]!r}")
    if page.evaluate("document.querySelectorAll('details.fl-fold[open]').length"):
        out.append(f"{name}: a folded listing or exercise is open by default")
    unfolded = page.evaluate("Array.from(document.querySelectorAll('.jp-CodeCell'))"
                             ".filter(c => !c.closest('details') && /(^|[^\\w.])show\\(\\w/.test("
                             "(c.querySelector('.jp-InputArea') || c).innerText)).length")
    if unfolded:
        out.append(f"{name}: {unfolded} show(...) listing(s) not folded")
    return out


@pytest.mark.notebooks
@pytest.mark.site
def test_reader_opens_the_site_in_chromium(built_site: tuple[Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]):
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found; {INSTALL_HINT}", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the playwright package is not installed; {INSTALL_HINT}", pytrace=False)
    _, root = built_site
    index_url = (root / "index.html").resolve().as_uri()
    shots: list[Path] = []
    network: list[str] = []
    problems: list[str] = []

    def offline(route, request):  # noqa: ANN001 - playwright types
        if request.url.startswith(("http://", "https://")):
            network.append(request.url)
            route.abort()
        else:
            route.continue_()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--allow-file-access-from-files"])
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            ctx.route("**/*", offline)
            page = ctx.new_page()
            page.on("pageerror", lambda e: problems.append(f"JS error: {e}"))

            def open_and_check(url: str, name: str, full: bool) -> None:
                page.goto(url, wait_until="load")
                page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=30_000)
                broken = page.evaluate("Array.from(document.images)"
                                       ".filter(i => !(i.complete && i.naturalWidth > 0))"
                                       ".map(i => (i.getAttribute('src') || '').slice(0, 80))")
                if broken:
                    problems.append(f"{name}: images that did not render: {broken}")
                shot = tmp_path / f"{name}.png"
                page.screenshot(path=str(shot), full_page=full)
                shots.append(shot)

            open_and_check(index_url, "index", full=True)
            assert page.title() == "fusionlib · executed notebooks"
            problems += reader_view_problems(page, "index.html")
            n_img_index = page.evaluate("document.images.length")
            hrefs = page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
            ids = set(page.evaluate("Array.from(document.querySelectorAll('[id]')).map(e => e.id)"))
            assert hrefs, "the index has no links"
            seen: set[str] = set()
            for href in hrefs:
                base, frag = urldefrag(href)
                if base == index_url:  # an in-page link: the target must exist
                    if frag and unquote(frag) not in ids:
                        problems.append(f"index link #{frag} has no target")
                    continue
                if base in seen:
                    continue
                seen.add(base)
                target = Path(unquote(urlparse(base).path))
                if urlparse(base).scheme != "file" or not target.is_file():
                    problems.append(f"index link {href} is not a file of the site")
                    continue
                name = target.relative_to(root.resolve()).as_posix().replace("/", "__")
                if target.suffix == ".html":
                    open_and_check(base, name, full=False)
                    if not page.title() or not page.evaluate("document.body.innerText.trim().length > 100"):
                        problems.append(f"{target.name}: loaded empty")
                    if not page.evaluate("document.querySelectorAll('.jp-Cell').length"):
                        problems.append(f"{target.name}: no notebook cells rendered")
                    problems += reader_view_problems(page, target.name)
                elif target.suffix == ".json":
                    page.goto(base, wait_until="load")
                    try:
                        json.loads(page.evaluate("document.body.innerText"))
                    except ValueError:
                        problems.append(f"{target.name}: does not display as JSON")
                else:  # a figure: the browser shows it as an image document
                    page.goto(base, wait_until="load")
                    ok = page.evaluate("document.images.length === 1 && document.images[0].naturalWidth > 0")
                    if not ok:
                        problems.append(f"figure {target.name} does not render")
        finally:
            browser.close()
    with capsys.disabled():
        print(f"\nsite screenshots ({len(shots)}):")
        for s in shots:
            print(f"  {s}")
    assert not network, f"pages tried to reach the network: {network[:5]}"
    assert not problems, "\n".join(problems)
    assert n_img_index >= 1 and len(seen) >= 2
    for s in shots:
        assert s.stat().st_size > 5_000, f"{s} looks blank"
    keep = os.environ.get("FUSIONLIB_SITE_SHOTS")  # optional: copy the screenshots somewhere to look at
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for s in shots:
            shutil.copyfile(s, Path(keep) / s.name)
