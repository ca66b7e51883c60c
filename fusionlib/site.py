"""A static, offline site of the executed notebooks: ``python -m fusionlib.site --runs runs --out site``.

``make run`` leaves ``runs/NN_name/NN_name.ipynb`` (executed by papermill), ``results.json`` and the
figures the notebook saved. This module turns them into pages a reading group opens in a browser
without a network connection and without running anything:

- ``site/NN_name.html``: the executed notebook (nbconvert's ``lab`` template) with every remote
  ``<script>``/``<link>`` left out (require.js, MathJax, mermaid, the widget manager). Markdown is
  rendered and every formula (``$...$``, ``$$...$$``, ``\\begin{env}``) is converted to MathML at build
  time (``latex2mathml``, pinned in ``requirements-site.txt``), which the browser draws with no script.
  The ``show(...)`` source listings and the exercise sections (an ``Exercise`` heading and the cells
  tagged ``exercise``/``check``, see ``fusionlib.labs.student``) are folded in closed ``<details>``.
  Plots are already inline base64 PNGs; an ipywidgets output is replaced by a static snapshot of its
  saved state (e.g. a finished tqdm bar).
- A banner on every page: profile, device, date of the run, the commit of the checkout that built the
  site, and at ``smoke`` which networks are shipped (``weights/MANIFEST.json``) and which one the run
  evaluated (``results.json``: ``evaluated_network`` / ``weights``).
- ``site/NN_name/figures/...``: every PNG/SVG the run wrote under ``runs/NN_name/``, and
  ``site/NN_name/results.json``.
- ``site/index.html``: one card per notebook: its intro, "what to look at" (a few headline numbers
  from ``results.json`` by name, see :data:`HEADLINES`, and the figures), its questions for a reading
  group, and every recorded number in a folded table.

The site is built in a sibling staging folder and swapped in at the end, so an interrupted build
leaves the previous site intact; a folder that is not a fusionlib site is never replaced.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunEntry", "find_runs", "flatten", "results_html", "remote_refs", "strip_remote",
           "render_notebook", "build_site", "is_tabular", "main"]

MARKER = ".fusionlib-site"
FIGURE_SUFFIXES = (".png", ".svg")


@dataclass
class RunEntry:
    """One executed notebook under ``runs/``: ``runs/<stem>/<stem>.ipynb`` and what it wrote."""

    stem: str
    notebook: Path
    results: Path | None
    figures: list[Path] = field(default_factory=list)
    title: str = ""
    intro: str = ""
    failed: bool = False
    questions: str = ""                                   # markdown under "Questions for a reading group"
    nb: Any = field(default=None, repr=False)             # the executed notebook (nbformat node)


# --------------------------------------------------------------------------- discovery

def _title_and_intro(nb: Any, stem: str) -> tuple[str, str]:
    """The first ``# heading`` of the notebook and the ``>`` block quote under it (plain text)."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        title = next((ln[2:].strip() for ln in lines if ln.startswith("# ")), "")
        quote = " ".join(ln.lstrip(">").strip() for ln in lines if ln.startswith(">"))
        if title:
            return title, quote
    return stem, ""


def find_runs(runs: str | Path) -> list[RunEntry]:
    """The executed notebooks ``runs/NN_name/NN_name.ipynb`` in order, with results and figures.

    Raises ``FileNotFoundError`` naming the folder (and saying to run ``make run``) when there
    are none.
    """
    import nbformat

    runs = Path(runs)
    hint = ("expected runs/<NN_name>/<NN_name>.ipynb from the notebook runner: "
            "run `make run` first (or `python -m fusionlib.runner notebooks --out "
            f"{runs}`)")
    if not runs.is_dir():
        raise FileNotFoundError(f"no executed notebooks: folder {runs} does not exist; {hint}")
    entries: list[RunEntry] = []
    for d in sorted(p for p in runs.glob("[0-9][0-9]_*") if p.is_dir()):
        nb_path = d / f"{d.name}.ipynb"
        if not nb_path.is_file():
            continue
        try:
            nb = nbformat.read(nb_path, as_version=4)
        except Exception as e:
            raise ValueError(f"{nb_path}: not a readable notebook ({type(e).__name__}: {e})") from e
        title, intro = _title_and_intro(nb, d.name)
        failed = bool(nb.metadata.get("papermill", {}).get("exception"))
        res = d / "results.json"
        figs = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in FIGURE_SUFFIXES
                      and not any(part.startswith(".") for part in p.relative_to(d).parts))
        entries.append(RunEntry(d.name, nb_path, res if res.is_file() else None, figs, title, intro, failed,
                              questions_md(nb), nb))
    if not entries:
        raise FileNotFoundError(f"no executed notebooks in {runs}/; {hint}")
    return entries


# --------------------------------------------------------------------------- results tables

def _fmt(v: Any) -> str:
    """A cell: floats to 4 significant digits, short lists inline, everything HTML-escaped."""
    if isinstance(v, bool) or v is None:
        return html.escape(str(v))
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        shown = ", ".join(_fmt(x) for x in v[:12])
        return f"[{shown}{', … ' + str(len(v)) + ' values' if len(v) > 12 else ''}]"
    return html.escape(str(v))


def flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts to ``[(dotted.key, leaf)]``; lists of scalars stay leaves, lists of dicts get ``[i]``.

    >>> flatten({"a": {"b": 1, "c": [1, 2]}, "d": [{"e": 0.5}]})
    [('a.b', 1), ('a.c', [1, 2]), ('d[0].e', 0.5)]
    """
    if isinstance(d, dict):
        out: list[tuple[str, Any]] = []
        for k, v in d.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(d, list) and any(isinstance(x, (dict, list)) for x in d):
        out = []
        for i, v in enumerate(d):
            out += flatten(v, f"{prefix}[{i}]")
        return out
    return [(prefix, d)]


def _is_matrix(v: Any) -> bool:
    """A dict of (at least two) dicts of scalars: reads best as rows x columns."""
    return (isinstance(v, dict) and len(v) >= 2
            and all(isinstance(x, dict) and x and all(not isinstance(y, dict) for y in x.values())
                    for x in v.values()))


def results_html(results: dict[str, Any], anchor: str = "") -> str:
    """``results.json`` as HTML tables: a two-column table of every flattened ``key | value``, and one
    rows x columns table for each top-level entry that is a dict of dicts of numbers (e.g. metrics).
    The ``meta`` block is left to the caller.
    """
    body = {k: v for k, v in results.items() if k != "meta"}
    plain = [(k, v) for k, v in body.items() if not _is_matrix(v)]
    parts: list[str] = []
    rows = flatten(dict(plain))
    if rows:
        trs = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
        parts.append(f'<table class="kv"><thead><tr><th>key</th><th>value</th></tr></thead>'
                     f"<tbody>{trs}</tbody></table>")
    for name, mat in body.items():
        if not _is_matrix(mat):
            continue
        cols: list[str] = []
        for row in mat.values():
            cols += [c for c in row if c not in cols]
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
        trs = "".join(
            f"<tr><th>{html.escape(str(r))}</th>"
            + "".join(f"<td>{_fmt(row[c]) if c in row else ''}</td>" for c in cols) + "</tr>"
            for r, row in mat.items())
        parts.append(f'<table class="matrix"><caption>{html.escape(str(name))}</caption>'
                     f"<thead><tr><th></th>{head}</tr></thead><tbody>{trs}</tbody></table>")
    if not parts:
        return '<p class="muted">results.json holds no entries besides meta.</p>'
    return "\n".join(parts)


# --------------------------------------------------------------------------- offline HTML

_REMOTE = r"""(?:https?:)?//"""
_TAG_ATTR = re.compile(
    r"<(script|link|img|iframe|source|audio|video|embed|object|input)\b[^>]*?"
    r"\s(?:src|href|data|srcset)\s*=\s*"
    r"""["']?\s*((?:https?:)?//[^"'\s>]+)""", re.IGNORECASE)
_CSS_URL = re.compile(r"""(?:url\(\s*["']?|@import\s+["'])\s*(https?://[^"')\s]+)""", re.IGNORECASE)
_JS_IMPORT = re.compile(r"""\bimport\s*\(\s*["'](https?://[^"']+)""")


def remote_refs(page: str) -> list[str]:
    """Every URL the page would fetch from the network to render: ``src``/``href`` of script, link,
    img, iframe, ... tags, CSS ``url(...)``/``@import`` and dynamic ``import("https://...")``.
    Plain ``<a href="https://...">`` links are not fetched and are not counted.

    >>> remote_refs('<script src="https://cdn/x.js"></script><a href="https://doi.org/1">paper</a>')
    ['https://cdn/x.js']
    """
    refs = [m.group(2) for m in _TAG_ATTR.finditer(page)]
    refs += [m.group(1) for m in _CSS_URL.finditer(page)]
    refs += [m.group(1) for m in _JS_IMPORT.finditer(page)]
    return refs


def strip_remote(page: str) -> str:
    """Remove remote ``<script src>`` elements, inline scripts that import remote modules, and remote
    ``<link>`` tags; replace a remote ``<img>`` by its alt text.

    >>> strip_remote('<p><script src="https://cdn/x.js"></script><link href="//cdn/a.css"></p>')
    '<p></p>'
    """
    page = re.sub(r"<script\b[^>]*\ssrc\s*=\s*[\"']?\s*" + _REMOTE + r"[^>]*>.*?</script\s*>", "", page,
                  flags=re.IGNORECASE | re.DOTALL)
    page = re.sub(r"<script\b[^>]*>(?:(?!</script).)*?import\s*\(\s*[\"']https?://.*?</script\s*>", "", page,
                  flags=re.IGNORECASE | re.DOTALL)
    page = re.sub(r"<link\b[^>]*\shref\s*=\s*[\"']?\s*" + _REMOTE + r"[^>]*>", "", page, flags=re.IGNORECASE)

    def _img(m: re.Match[str]) -> str:
        alt = re.search(r"""\salt\s*=\s*["']([^"']*)""", m.group(0))
        what = ": " + alt.group(1) if alt else ""
        return f'<span class="fl-remote-img">[image not available offline{what}]</span>'

    return re.sub(r"<img\b[^>]*\ssrc\s*=\s*[\"']?\s*" + _REMOTE + r"[^>]*>", _img, page, flags=re.IGNORECASE)


_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _widget_html(mid: str, state: dict[str, Any], depth: int = 0) -> str:
    """A static snapshot of one saved widget model (HTML/Label text, progress bars, boxes, values)."""
    model = state.get(mid)
    if model is None or depth > 20:
        return ""
    name = model.get("model_name", "")
    s = model.get("state", {})
    if "children" in s:
        kids = [str(c).removeprefix("IPY_MODEL_") for c in s["children"]]
        return "".join(_widget_html(k, state, depth + 1) for k in kids)
    if name in ("HTMLModel", "HTMLMathModel"):
        return f"<span>{s.get('value', '')}</span>"
    if name.endswith("ProgressModel"):
        lo, hi, v = float(s.get("min", 0)), float(s.get("max", 100)), float(s.get("value", 0))
        return f'<progress max="{hi - lo:g}" value="{v - lo:g}"></progress>'
    if "value" in s and not isinstance(s["value"], (dict, list)):
        desc = s.get("description") or ""
        return f"<span>{html.escape(str(desc) + ': ' if desc else '')}{html.escape(str(s['value']))}</span>"
    return ""


def _static_widgets(nb: Any) -> int:
    """Replace each widget-view output by a static HTML snapshot; drop the saved widget state so the
    page does not try to load the widget manager. Returns the number of outputs replaced."""
    state = nb.metadata.get("widgets", {}).get(_WIDGET_STATE, {}).get("state", {})
    n = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if _WIDGET_VIEW not in data:
                continue
            view = data.pop(_WIDGET_VIEW)
            snap = _widget_html(str(view.get("model_id", "")), state) if isinstance(view, dict) else ""
            if snap:
                data["text/html"] = f'<div class="fl-widget" title="static snapshot of a widget">{snap}</div>'
            else:
                data["text/html"] = ('<div class="fl-widget fl-muted">(interactive widget: open the notebook '
                                     "in Jupyter to use it)</div>")
            n += 1
    nb.metadata.pop("widgets", None)
    return n


# --------------------------------------------------------------------------- markdown and math

_MATHML_WARNED: list[bool] = []


def tex_to_html(tex: str, *, display: bool = False) -> str:
    """One TeX formula (without its ``$`` delimiters) as MathML, which browsers draw without a script.

    A formula ``latex2mathml`` cannot parse (or a build without the package) is shown as its TeX source
    in a ``<code class="fl-tex">`` span, never as raw ``$...$``.

    >>> tex_to_html("a^2").startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">')
    True
    """
    try:
        from latex2mathml.converter import convert
    except ImportError:
        if not _MATHML_WARNED:
            _MATHML_WARNED.append(True)
            print("warning: latex2mathml is not installed, formulas stay TeX source "
                  "(pip install -r requirements-site.txt)", file=sys.stderr)
        convert = None
    if convert is not None:
        try:
            return convert(tex.strip(), display="block" if display else "inline")
        except Exception:  # noqa: BLE001 - any parse failure falls back to the source
            pass
    tag = "div" if display else "span"
    return f'<{tag} class="fl-tex" title="formula shown as TeX source"><code>{html.escape(tex.strip())}</code></{tag}>'


_EXPORTER: list[type] = []
_COLUMN_GAP = re.compile(r"\S {2,}(?=\S)")


def is_tabular(text: str) -> bool:
    """Whether a text output is a printed table (``DataFrame.to_string`` and the like): at least two lines
    with two or more column gaps of 2+ spaces. The page keeps such outputs unwrapped (a wrapped last column
    reads like data), and lets prose wrap.

    >>> is_tabular("      EN    SF\\nA  5.8  6.4\\nB  6.4  11.7"), is_tabular("one line of prose, wrapped")
    (True, False)
    """
    return sum(len(_COLUMN_GAP.findall(ln)) >= 2 for ln in str(text).splitlines()) >= 2


def text_output_html(text: str) -> str:
    """A text output as ``<pre>`` blocks, one per paragraph (blank-line separated): a printed table
    (:func:`is_tabular`) gets ``class="fl-nowrap"`` (kept on one line per row, scrolls sideways when wider
    than the page), prose wraps. ANSI colours become HTML as nbconvert's ``ansi2html`` writes them."""
    from nbconvert.filters.ansi import ansi2html

    parts = re.split(r"(?<=\n)(?=[ \t]*\n)", str(text))  # a paragraph keeps the newline that ends it
    blocks: list[tuple[bool, str]] = []  # (tabular, text): consecutive paragraphs of one kind merged
    for part in parts:
        tab = is_tabular(part)
        if blocks and (not part.strip() or blocks[-1][0] == tab):
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + part)
        else:
            blocks.append((tab, part))
    # the newline after <pre> is the one HTML drops, so a paragraph's own leading blank line stays
    nowrap = ' class="fl-nowrap"'
    return "".join(f"<pre{nowrap if tab else ''}>\n{ansi2html(body)}</pre>" for tab, body in blocks)


def _exporter_class() -> type:
    """``HTMLExporter`` whose markdown renderer writes MathML for formulas (built once, imports lazily)."""
    if _EXPORTER:
        return _EXPORTER[0]
    from jinja2 import pass_context
    from nbconvert import HTMLExporter
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    class MathMLRenderer(IPythonRenderer):
        """nbconvert's markdown renderer with formulas as MathML instead of TeX left for MathJax."""

        def block_math(self, body: str) -> str:
            return tex_to_html(body, display=True)

        def inline_math(self, body: str) -> str:
            return tex_to_html(body)

        def latex_environment(self, name: str, body: str) -> str:
            return tex_to_html(f"\\begin{{{name}}}{body}\\end{{{name}}}", display=True)

    class OfflineExporter(HTMLExporter):
        """The ``lab`` HTML exporter with MathML math and the site's folding/banner template."""

        @pass_context
        def markdown2html(self, context: Any, source: str) -> str:
            cell = context.get("cell", {})
            path = context.get("resources", {}).get("metadata", {}).get("path", "")
            renderer = MathMLRenderer(escape=False, attachments=cell.get("attachments", {}),
                                      embed_images=self.embed_images, path=path,
                                      anchor_link_text=self.anchor_link_text,
                                      exclude_anchor_links=self.exclude_anchor_links)
            return MarkdownWithMath(renderer=renderer).render(source)

        def default_filters(self):  # noqa: ANN201 - nbconvert's generator of (name, filter)
            yield from super().default_filters()
            yield ("tex2html", _latex_output_html)
            yield ("fl_table_class", lambda text: " fl-table" if is_tabular(text) else "")
            yield ("fl_text_html", text_output_html)

    OfflineExporter.MathMLRenderer = MathMLRenderer  # type: ignore[attr-defined]
    _EXPORTER.append(OfflineExporter)
    return OfflineExporter


def _latex_output_html(tex: str) -> str:
    """A ``text/latex`` output (e.g. ``display(Math(...))``): ``$$..$$``/``$..$`` to MathML, else escaped."""
    t = tex.strip()
    m = re.fullmatch(r"\$\$(.+)\$\$|\$(.+)\$|\\\[(.+)\\\]", t, flags=re.DOTALL)
    if m:
        body = next(g for g in m.groups() if g is not None)
        return tex_to_html(body, display=m.group(2) is None)
    if t.startswith("\\begin{"):
        return tex_to_html(t, display=True)
    return f"<pre>{html.escape(tex)}</pre>"


def markdown_html(text: str, *, inline: bool = False) -> str:
    """Markdown (with ``$`` math) to HTML the way the notebook pages render it; ``inline`` drops the
    outer ``<p>`` of a one-paragraph text (for card intros and summaries).

    >>> markdown_html("**bold** and `code`", inline=True)
    '<strong>bold</strong> and <code>code</code>'
    """
    from nbconvert.filters.markdown_mistune import MarkdownWithMath

    renderer = _exporter_class().MathMLRenderer(escape=True, anchor_link_text="", exclude_anchor_links=True)
    out = MarkdownWithMath(renderer=renderer).render(text).strip()
    if inline and out.startswith("<p>") and out.endswith("</p>") and out.count("<p>") == 1:
        out = out[3:-4]
    return out


# --------------------------------------------------------------------------- folding

_SHOW_CALL = re.compile(r"(?<![\w.])(?:nb\.)?show\(\s*([A-Za-z_][\w.]*)\s*\)")
_EXERCISE_HEAD = re.compile(r"\s*#{1,6}\s*(Exercise\b[^\n]*)", re.IGNORECASE)  # the cell's first line
_FOLD_TAGS = ("exercise", "check", "hint")  # "hint": the folded hints between a task and its cell


def _plain_inline(md: str) -> str:
    """Heading text for a ``<summary>``: escaped, ``code`` spans kept, math shown as MathML."""
    return markdown_html(md.strip(), inline=True)


def _stream_text(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


_ERROR_NOTE = ' <span class="fl-bad">✗ raised an error: open to read it</span>'


def _has_error(cell: Any) -> bool:
    return any(o.get("output_type") == "error" for o in cell.get("outputs", []))


def _fold(first: Any, last: Any, kind: str, title_html: str, muted: str, after_html: str = "") -> None:
    """Fold the cells ``first``..``last`` into one closed ``<details>`` whose summary reads
    "<kind> <title_html> <muted, escaped><after_html>" (the page template reads the two metadata keys)."""
    first.metadata["fusionlib_fold_open"] = (f'<span class="fl-kind">{kind}</span> {title_html}'
                                             f'<span class="fl-muted">{html.escape(muted)}</span>{after_html}')
    last.metadata["fusionlib_fold_close"] = True


def mark_folds(nb: Any) -> int:
    """Mark the cells a reader meets folded: ``show(...)`` listings and exercise sections.

    Sets ``cell.metadata["fusionlib_fold_open"]`` (the ``<summary>`` HTML) on the first cell of a fold and
    ``cell.metadata["fusionlib_fold_close"] = True`` on its last; the page template wraps the cells in
    between in one closed ``<details>``. An exercise section is an ``Exercise ...`` heading cell plus the
    cells right after it tagged ``exercise``/``check``/``hint`` (tagged cells without a heading fold on their own).
    Returns the number of folds.
    """
    cells = nb.cells
    n, i = 0, 0
    while i < len(cells):
        c = cells[i]
        tags = set(c.metadata.get("tags", []))
        head = _EXERCISE_HEAD.match(c.source) if c.cell_type == "markdown" else None
        if head or tags & set(_FOLD_TAGS):
            j = i + 1 if head else i
            while j < len(cells) and set(cells[j].metadata.get("tags", [])) & set(_FOLD_TAGS):
                j += 1
            last = max(j - 1, i)
            group = cells[i:last + 1]
            title = _plain_inline(head.group(1)) if head else "Exercise"
            checks = [ln.strip() for g in group if "check" in g.metadata.get("tags", [])
                      for ln in _stream_text(g).splitlines() if ln.strip().startswith(("✓", "✔"))]
            parts = [c for c in ("the task" if head else "",
                                 "the exercise cell" if any("exercise" in g.metadata.get("tags", []) for g in group)
                                 else "", "its check" if any("check" in g.metadata.get("tags", []) for g in group)
                                 else "") if c]
            note = (" (" + ", ".join(parts) + ")") if parts else ""
            passed = (f' <span class="fl-ok">{html.escape(checks[0].split(" on inputs")[0][:90])}</span>'
                      if checks else "") + (_ERROR_NOTE if any(_has_error(g) for g in group) else "")
            _fold(c, cells[last], "lab", title, note, passed)
            n += 1
            i = last + 1
            continue
        if c.cell_type == "code":
            shown = _SHOW_CALL.findall(c.source)
            if shown:
                names = ", ".join(f"<code>{html.escape(a.strip())}</code>" for a in shown)
                lines = sum(len((o.get("data", {}).get("text/plain") or o.get("text", "")).splitlines())
                            for o in c.get("outputs", []))
                size = f" · {lines} lines" if lines > 1 else ""
                _fold(c, c, "source", f"listing of {names}", size, _ERROR_NOTE if _has_error(c) else "")
                n += 1
        i += 1
    return n


# --------------------------------------------------------------------------- run banner

#: The networks each notebook trains and evaluates (``fusionlib.methods``: ``Method.notebook``), kept here
#: so building the site does not import torch; ``tests/test_site.py`` checks it against the registry.
NOTEBOOK_METHODS: dict[str, tuple[str, ...]] = {
    "00_foundations": ("tinyfuse",), "01_aidfusion": ("aidfusion",), "02_siba": ("siba",),
    "03_lkc_funet": ("lkc_funet",), "04_rpfnet": ("rpfnet",), "05_dmnet": ("dmnet",),
    "06_benchmark": ("tinyfuse", "aidfusion", "siba", "lkc_funet", "rpfnet", "dmnet"),
}

_PROFILE_NOTE = {
    "smoke": ("Smoke run: a few training steps on a CPU, to show that every cell runs. Networks trained in "
              "this run are barely trained, so their pictures and numbers are not the paper's results."),
    "lab": "Lab run: a reduced training budget; compare trends with the paper, not absolute numbers.",
    "paper": "Paper run: the paper's training budget and data.",
}


@dataclass
class RunInfo:
    """What the banner of one page says about its run (empty strings: unknown)."""

    profile: str = ""
    profile_detail: str = ""
    device: str = ""
    date: str = ""
    evaluated: list[tuple[str, str]] = field(default_factory=list)   # (what, label) from results.json
    shipped: list[tuple[str, str]] = field(default_factory=list)     # (method, label or "" if none)


def _stream_lines(nb: Any, max_cells: int = 8) -> list[str]:
    """The stdout lines of the first ``max_cells`` code cells (where ``nb.setup`` prints the profile)."""
    out: list[str] = []
    for c in [c for c in nb.cells if c.cell_type == "code"][:max_cells]:
        out += _stream_text(c).splitlines()
    return out


def shipped_networks(methods: tuple[str, ...] | list[str], weights_dir: str | Path | None = None
                     ) -> list[tuple[str, str]]:
    """``[(method, label)]``: ``fusionlib.weights.shipped_label`` where ``weights/`` has the file, else ``""``."""
    from fusionlib import weights as W

    wd = W.WEIGHTS_DIR if weights_dir is None else Path(weights_dir)
    return [(m, W.shipped_label(m, wd) if W.shipped_weights(m, wd) is not None else "") for m in methods]


def run_info(stem: str, nb: Any, results: dict[str, Any] | None,
             weights_dir: str | Path | None = None) -> RunInfo:
    """Profile, device and date of one run (``results.json`` meta, else the notebook's own setup output or
    papermill's metadata), the network(s) it evaluated, and what ``weights/`` ships for its methods."""
    meta = (results or {}).get("meta", {}) if isinstance(results, dict) else {}
    meta = meta if isinstance(meta, dict) else {}
    info = RunInfo(profile=str(meta.get("profile") or ""), device=str(meta.get("device") or ""))
    for ln in _stream_lines(nb):
        m = re.match(r"profile=(\w+)(?: \((.*)\))?\s*$", ln)
        if m:
            info.profile = info.profile or m.group(1)
            info.profile_detail = m.group(2) or ""
        m = re.match(r"device=(\S+)(?: \[(.*?)\])?", ln)
        if m:
            info.device = info.device or m.group(1)
            if m.group(2) and m.group(2) not in info.device:
                info.device += f" ({m.group(2)})"
    written = str(meta.get("written") or nb.metadata.get("papermill", {}).get("end_time") or "")
    info.date = written.replace("T", " ")[:16]
    res = results if isinstance(results, dict) else {}
    if isinstance(res.get("evaluated_network"), str):
        info.evaluated.append(("evaluated", res["evaluated_network"]))
    w = res.get("weights")
    if isinstance(w, dict):
        info.evaluated += [(str(k), str(v)) for k, v in w.items() if not isinstance(v, (dict, list))]
    elif isinstance(w, str):
        info.evaluated.append(("weights", w))
    info.shipped = shipped_networks(NOTEBOOK_METHODS.get(stem, ()), weights_dir)
    return info


def git_commit(repo: str | Path | None = None) -> str:
    """Short hash of the checkout that builds the site (``+ local changes`` when ``fusionlib/`` or the
    notebooks differ from it), or ``"unknown"`` outside git."""
    import subprocess

    root = Path(repo) if repo else Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "fusionlib",
                                "notebooks"], cwd=root, capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" + local changes" if dirty else "") if head else "unknown"


def _chip(label: str, value: str) -> str:
    return f'<span class="fl-chip"><span class="fl-chip-k">{html.escape(label)}</span> {value}</span>'


def _networks_html(info: RunInfo) -> str:
    """The banner's networks line: what the run evaluated and what ``weights/`` ships (a shipped network
    whose line is the same as an evaluated one is listed once)."""
    items = [f"<li><b>{'network the figures show' if what == 'evaluated' else html.escape(what)}</b>: "
             f"{html.escape(label)}</li>" for what, label in info.evaluated]
    seen = {label for _, label in info.evaluated}
    for m, label in info.shipped:
        if label and label in seen:
            continue
        items.append(f"<li><b>{html.escape(m)}</b> in <code>weights/</code>: "
                     + (html.escape(label) if label else
                        "none shipped, so at smoke the notebook shows its own few-step network") + "</li>")
    return f'<ul class="fl-nets">{"".join(items)}</ul>' if items else ""


def banner_html(info: RunInfo, commit: str) -> str:
    """The banner at the top of a notebook page: profile, device, date, commit, and (at smoke) which
    networks are shipped and which one the run evaluated."""
    prof = info.profile or "unknown"
    cls = {"smoke": "fl-smoke", "lab": "fl-lab", "paper": "fl-paper"}.get(prof, "fl-unknown")
    chips = [_chip("profile", f"<b>{html.escape(prof)}</b>"),
             _chip("device", html.escape(info.device or "unknown")),
             _chip("run", html.escape(info.date or "date unknown")),
             _chip("commit", f"<code>{html.escape(commit)}</code> (site build)")]
    note = _PROFILE_NOTE.get(prof, "The run's profile is not recorded.")
    if prof == "smoke" and any(label for _, label in info.shipped):
        note += " A shipped network (named below) is trained longer, on the CPU recipe."
    detail = f' <span class="fl-detail">({html.escape(info.profile_detail)})</span>' if info.profile_detail else ""
    nets = _networks_html(info) if (prof == "smoke" or info.evaluated) else ""
    return (f'<div class="fl-banner {cls}" role="note" aria-label="run banner">'
            f'<div class="fl-chips">{"".join(chips)}</div>'
            f'<p class="fl-banner-note">{html.escape(note)}{detail}</p>{nets}</div>')


def index_banner_html(infos: list[RunInfo], commit: str, weights_dir: str | Path | None = None) -> str:
    """The banner at the top of the index: the runs' profiles, devices and dates, the commit, and at
    smoke every network's shipped weights (or none)."""
    profs = sorted({i.profile or "unknown" for i in infos})
    devs = sorted({i.device for i in infos if i.device}) or ["unknown"]
    dates = sorted(i.date for i in infos if i.date)
    if not dates:
        when = "unknown"
    elif dates[0] == dates[-1]:
        when = dates[0]
    elif dates[0][:10] == dates[-1][:10]:
        when = f"{dates[0]} to {dates[-1][11:]}"
    else:
        when = f"{dates[0]} to {dates[-1]}"
    counts = ", ".join(f"<b>{html.escape(p)}</b> ({sum((i.profile or 'unknown') == p for i in infos)})"
                       for p in profs)
    chips = [_chip("profile", counts), _chip("device", html.escape(", ".join(devs))),
             _chip("runs", html.escape(when)), _chip("commit", f"<code>{html.escape(commit)}</code> (site build)")]
    cls = "fl-smoke" if "smoke" in profs else ("fl-lab" if "lab" in profs else "fl-paper")
    notes = [html.escape(_PROFILE_NOTE[p]) for p in profs if p in _PROFILE_NOTE]
    nets = ""
    if "smoke" in profs:
        from fusionlib.weights import SHIPPED

        rows = shipped_networks(list(SHIPPED), weights_dir)
        if any(lab for _, lab in rows):
            notes.append("Where <code>weights/</code> ships a network (listed below), the smoke pages evaluate it "
                         "instead of their few-step network; each page's banner says which one its figures show.")
        have = [f"<li><b>{html.escape(m)}</b>: {html.escape(lab)}</li>" for m, lab in rows if lab]
        miss = [m for m, lab in rows if not lab]
        nets = ('<ul class="fl-nets">' + "".join(have)
                + (f"<li>not shipped: {html.escape(', '.join(miss))} (their smoke pages show the few-step "
                   "network the run trained)</li>" if miss else "") + "</ul>")
    return (f'<div class="fl-banner {cls}" role="note" aria-label="run banner">'
            f'<div class="fl-chips">{"".join(chips)}</div>'
            + "".join(f'<p class="fl-banner-note">{n}</p>' for n in notes) + nets + "</div>")


_BANNER_CSS = """
.fl-banner{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;padding:10px 18px;margin:0;
  border-bottom:1px solid rgba(0,0,0,.12);color:#2b2b2b}
.fl-banner.fl-smoke{background:#fff4d6;border-left:6px solid #e0a100}
.fl-banner.fl-lab{background:#e9f3ff;border-left:6px solid #3b82c4}
.fl-banner.fl-paper{background:#e8f6ec;border-left:6px solid #2f9e5b}
.fl-banner.fl-unknown{background:#f1f1f1;border-left:6px solid #999}
.fl-chips{display:flex;flex-wrap:wrap;gap:6px 14px;margin-bottom:4px}
.fl-chip{white-space:nowrap} .fl-chip-k{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:#6b5a2a}
.fl-banner code{background:rgba(0,0,0,.06);padding:0 4px;border-radius:3px}
.fl-banner-note{margin:2px 0} .fl-detail{color:#6a6a6a}
.fl-nets{margin:2px 0 0;padding-left:20px;font-size:13px}
"""


# --------------------------------------------------------------------------- what to look at

#: Per notebook, the few numbers of ``results.json`` a reader should look at first: (dotted path, name).
#: Paths that a run did not record are skipped; a notebook not listed gets its top-level scalars.
HEADLINES: dict[str, list[tuple[str, str]]] = {
    "00_foundations": [
        ("training_steps", "training steps in this run"), ("final_loss", "final training loss"),
        ("tinyfuse.params", "TinyFuse parameters"), ("tinyfuse.gmac_480x640", "GMAC per 480×640 pair"),
        ("target_contrast_00004N", "target contrast on the night pair 00004N"),
        ("tinyfuse_above_baselines_tang", "TinyFuse against the max and average baselines (Tang preset)"),
    ],
    "01_aidfusion": [
        ("params.total", "AIDFusion parameters (this code)"), ("params.paper_M", "parameters in the paper (M)"),
        ("laziness_ratio_second_half_mean", "laziness ratio DIILS / baseline, second half of training"),
        ("table3_sign_agreement", "Table 3: signs that agree with the paper"),
        ("mpsa_omega_max_dev_from_third", "MPSA ω: largest distance from 1/3 after training"),
        ("faconv_high_freq_share", "FAConv: share of high-frequency power"),
    ],
    "02_siba": [
        ("training.steps", "training steps in this run"), ("params.total", "SIBA parameters (this code)"),
        ("params.paper_M", "parameters in the paper (M)"), ("efficiency.gmac_128", "GMAC per 128×128 crop"),
        ("released_weights", "the authors' released weights were found"),
        ("target_contrast_fused_crop", "target contrast of the fused night crop"),
    ],
    "03_lkc_funet": [
        ("training.steps", "training steps in this run"), ("params.total_code", "LKC-FUNet parameters (code)"),
        ("params.paper_K", "parameters in the paper (K)"),
        ("golden_max_abs_diff", "largest difference from the golden reference"),
        ("efficiency.gmac_256", "GMAC per 256×256 pair"), ("high_freq_fraction", "high-frequency fraction"),
    ],
    "04_rpfnet": [
        ("training.steps", "training steps in this run"), ("params.total", "RPFNet parameters"),
        ("params.unused_attention", "parameters of the attention the released code discards"),
        ("efficiency.gmac_128", "GMAC per 128×128 crop"),
        ("fused_night_target_contrast", "target contrast of the fused night crop"),
        ("released_mode_vs_paper_EN", "released inference mode against the paper's EN"),
    ],
    "05_dmnet": [
        ("training.model", "denoiser configuration trained"), ("training.steps", "training steps in this run"),
        ("params.trained_model", "parameters of the network trained here"),
        ("params.full.total", "DMNet parameters, full configuration (code)"),
        ("params.paper_M", "parameters in the paper (M)"), ("efficiency.gmac_128", "GMAC per 128×128 crop"),
        ("invertibility.coupling_float32", "affine coupling: inverse error (float32)"),
        ("schedule.half_signal_power_t", "first step t with under half the signal power"),
        ("released_inference_variability_mean_abs", "variability of the released-style inference (mean |Δ|)"),
    ],
    "06_benchmark": [
        ("evaluation", "what was evaluated"), ("evaluated_configs", "networks and their sizes"),
        ("undefined_metrics", "metrics undefined for some method"),
    ],
}
_RUNTIME_KEYS = ("seconds.total", "seconds_total")
_HEADLINE_SKIP = ("meta", "evaluated_network", "weights")


def lookup(results: dict[str, Any], path: str) -> Any:
    """``results`` at a dotted ``path`` (``"a.b"`` = ``results["a"]["b"]``), or ``None`` when absent.

    >>> lookup({"a": {"b": 2}}, "a.b"), lookup({"a": 1}, "a.c")
    (2, None)
    """
    cur: Any = results
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _value_html(v: Any) -> str:
    """A headline value: numbers formatted, strings as markdown, short dicts/lists inline."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, str):
        return markdown_html(v, inline=True)
    if isinstance(v, list):
        if v and all(isinstance(x, str) for x in v):
            items = "".join(f"<li>{markdown_html(x, inline=True)}</li>" for x in v[:6])
            more = f"<li class='muted'>… {len(v) - 6} more</li>" if len(v) > 6 else ""
            return f'<ul class="hl-list">{items}{more}</ul>'
        return _fmt(v)
    if isinstance(v, dict):
        flat = [(k, x) for k, x in v.items() if not isinstance(x, (dict, list))]
        if not flat:
            return f'<span class="muted">{len(v)} entries (all numbers below)</span>'
        shown = " · ".join(f'<span class="hl-pair">{html.escape(str(k))} <b>{_value_html(x)}</b></span>'
                           for k, x in flat[:6])
        return shown + (f' <span class="muted">… {len(flat) - 6} more</span>' if len(flat) > 6 else "")
    return html.escape(str(v))


def headlines(stem: str, results: dict[str, Any]) -> list[tuple[str, Any]]:
    """``[(name, value)]``: the :data:`HEADLINES` of ``stem`` the run recorded (an empty list, dict or string
    is left out: "none" is not a headline), and its run time."""
    spec = HEADLINES.get(stem)
    if spec is None:  # an unknown notebook: its top-level scalars and strings
        spec = [(k, k.replace("_", " ")) for k, v in results.items()
                if k not in _HEADLINE_SKIP and isinstance(v, (int, float, str, bool))][:6]
    out = [(name, v) for path, name in spec
           if (v := lookup(results, path)) is not None and not (isinstance(v, (list, dict, str)) and not v)]
    for path in _RUNTIME_KEYS:
        v = lookup(results, path)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(("run time of the notebook (s)", round(float(v))))
            break
    return out


def headlines_html(stem: str, results: dict[str, Any]) -> str:
    """The card's "what to look at" numbers as a definition list (empty string when none)."""
    rows = headlines(stem, results)
    if not rows:
        return ""
    return '<dl class="headlines">' + "".join(
        f"<dt>{html.escape(n)}</dt><dd>{_value_html(v)}</dd>" for n, v in rows) + "</dl>"


def questions_md(nb: Any) -> str:
    """The markdown under the notebook's "Questions for a reading group" heading ("" when it has none)."""
    for c in nb.cells:
        if c.cell_type != "markdown":
            continue
        m = re.search(r"^#{1,6}\s*Questions for a reading group[^\n]*\n", c.source, re.MULTILINE | re.IGNORECASE)
        if m:
            return c.source[m.end():].strip()
    return ""


_PAGE_CSS = """
<style>
 .fl-nav{position:sticky;top:0;z-index:10;background:#1f3b57;color:#fff;padding:6px 16px;
   font:14px/1.4 system-ui,sans-serif;display:flex;gap:18px;align-items:center}
 .fl-nav a{color:#cfe3ff;text-decoration:none} .fl-nav a:hover{text-decoration:underline}
 .fl-nav .fl-title{font-weight:600;flex:1}
 .fl-widget{font:13px monospace;display:flex;gap:8px;align-items:center;padding:2px 0}
 .fl-muted{color:#777} .fl-note{font:13px system-ui,sans-serif;color:#555;padding:4px 16px}
 """ + _BANNER_CSS + """
 details.fl-fold{margin:6px 0 6px 0;border:1px solid #d8dee6;border-left:4px solid #8aa4c0;border-radius:4px;
   background:#fbfcfd}
 details.fl-fold>summary{cursor:pointer;padding:5px 12px;font:14px/1.5 system-ui,sans-serif;color:#1f3b57}
 details.fl-fold>summary:hover{background:#eef3f8} details.fl-fold[open]>summary{border-bottom:1px solid #d8dee6}
 .fl-kind{display:inline-block;font-size:11px;text-transform:uppercase;letter-spacing:.04em;background:#dfe8f2;
   color:#1f3b57;border-radius:3px;padding:0 6px;margin-right:6px}
 .fl-ok{color:#1e7b3a;margin-left:8px} .fl-bad{color:#b3261e;margin-left:8px;font-weight:600} .fl-fold .fl-muted{margin-left:6px;font-size:13px}
 math[display=block]{margin:.5em 0;overflow-x:auto;overflow-y:hidden} math{font-size:1.08em}
 .fl-tex code{color:#7a4b00;background:#fff6e5}
 .jp-OutputArea-output pre{word-break:normal;overflow-wrap:anywhere}
 .jp-OutputArea-output.fl-table{display:block;max-width:calc(100vw - 160px);overflow-x:auto}
 .jp-OutputArea-output.fl-table pre.fl-nowrap{white-space:pre;overflow-wrap:normal;word-break:normal;overflow-x:auto;
   font-size:12px}
</style>
"""

_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}{{ resources.fusionlib_css }}{% endblock extra_css %}
{%- block body_header -%}{{ super() }}{{ resources.fusionlib_nav }}{%- endblock body_header -%}
{%- block any_cell scoped -%}
{%- if cell.metadata.fusionlib_fold_open -%}
<details class="fl-fold"><summary>{{ cell.metadata.fusionlib_fold_open }}</summary>
{%- endif -%}
{{ super() }}
{%- if cell.metadata.fusionlib_fold_close -%}</details>{%- endif -%}
{%- endblock any_cell -%}
{% block stream_stdout -%}
<div class="jp-RenderedText jp-OutputArea-output{{ output.text | fl_table_class }}" data-mime-type="text/plain">
{{- output.text | fl_text_html -}}
</div>
{%- endblock stream_stdout %}
{%- block data_text scoped %}
<div class="jp-RenderedText jp-OutputArea-output {{ extra_class }}{{ output.data['text/plain'] | fl_table_class }}" data-mime-type="text/plain">
{{- output.data['text/plain'] | fl_text_html -}}
</div>
{%- endblock data_text %}
{% block data_latex scoped %}
<div class="jp-RenderedLatex jp-OutputArea-output {{ extra_class }}" data-mime-type="text/latex">
{{ output.data['text/latex'] | tex2html }}
</div>
{%- endblock data_latex %}
"""


def render_notebook(nb_path: str | Path, *, title: str | None = None, nav: str = "") -> str:
    """One executed notebook as a self-contained offline HTML page (``lab`` template, no remote
    scripts or styles; markdown rendered, formulas as MathML; ``show()`` listings and exercise
    sections folded; widgets as static snapshots). ``nav`` is HTML placed at the top of the body
    (the site puts its navigation bar and run banner there)."""
    import nbformat
    from jinja2 import DictLoader

    nb_path = Path(nb_path)
    nb = nbformat.read(nb_path, as_version=4)
    _static_widgets(nb)
    mark_folds(nb)
    exporter = _exporter_class()(template_name="lab", template_file="fusionlib_offline.html.j2",
                                 extra_loaders=[DictLoader({"fusionlib_offline.html.j2": _TEMPLATE})])
    resources = {"metadata": {"name": title or nb_path.stem, "path": str(nb_path.parent)},
                 "fusionlib_css": _PAGE_CSS, "fusionlib_nav": nav}
    page, _ = exporter.from_notebook_node(nb, resources=resources)
    page = strip_remote(page)
    left = remote_refs(page)
    if left:
        raise RuntimeError(f"{nb_path}: the rendered page still fetches {left[:5]} from the network")
    return page


# --------------------------------------------------------------------------- index

_INDEX_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2733;background:#f3f5f8;margin:0}
header{background:#1f3b57;color:#fff;padding:28px 40px 22px}
header h1{margin:0 0 6px;font-size:28px} header p{margin:4px 0;max-width:70em;color:#dbe6f3}
header code{color:#fff;background:#2f5478;padding:0 4px;border-radius:3px}
main{padding:20px 40px 40px;max-width:1200px}
.toc{margin:0 0 18px;padding:0;list-style:none;display:flex;flex-wrap:wrap;gap:8px}
.toc a{display:inline-block;background:#fff;border:1px solid #c9d3de;border-radius:14px;padding:2px 12px;
  color:#1f3b57;text-decoration:none}
.card{background:#fff;border:1px solid #d5dde6;border-radius:8px;padding:18px 24px;margin:0 0 22px;
  box-shadow:0 1px 3px rgba(0,0,0,.06)}
.card h2{margin:0 0 4px;font-size:21px} .card h2 a{color:#1f3b57;text-decoration:none}
.card h2 a:hover{text-decoration:underline} .card h3{font-size:16px;margin:16px 0 6px;color:#34495e}
.intro{margin:6px 0 8px;color:#34495e}
.card code{background:#eef2f6;padding:0 4px;border-radius:3px;font-size:.92em} .meta{font-size:13px;color:#667}
.links{margin:8px 0 4px;display:flex;gap:14px;flex-wrap:wrap}
.links a{color:#0b62c4} .badge{background:#c0392b;color:#fff;border-radius:4px;padding:1px 7px;font-size:12px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #dde3ea;padding:3px 8px;text-align:left}
td{text-align:right;font-variant-numeric:tabular-nums} thead th{background:#eef2f6}
tbody th{font-weight:500;background:#fafbfc;white-space:nowrap}
caption{text-align:left;font-weight:600;padding:4px 0;color:#34495e}
.tables{display:flex;flex-wrap:wrap;gap:8px 28px;align-items:flex-start;overflow-x:auto}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px}
.figs figure{margin:0;background:#fafbfc;border:1px solid #e1e6ec;border-radius:6px;padding:6px;
  text-align:center}
.figs img{max-width:100%;height:130px;object-fit:contain}
.figs figcaption{font-size:12px;color:#556;word-break:break-all}
.muted{color:#777} footer{padding:0 40px 30px;color:#778;font-size:13px}
.pbadge{font-size:12px;border-radius:4px;padding:1px 7px;vertical-align:middle;font-weight:600}
.p-smoke{background:#fff0c2;color:#7a5600;border:1px solid #e0a100} .p-lab{background:#e1eefc;color:#1d4f82}
.p-paper{background:#dcf2e3;color:#1e6b3c} .p-unknown{background:#eee;color:#555}
dl.headlines{display:grid;grid-template-columns:minmax(12em,24em) 1fr;gap:3px 16px;margin:4px 0 14px;
  font-size:14px}
dl.headlines dt{color:#4a5a6a} dl.headlines dd{margin:0;font-variant-numeric:tabular-nums}
.hl-pair{white-space:nowrap} .hl-list{margin:0;padding-left:18px}
details.more{margin:10px 0 0;border-top:1px solid #e3e8ee;padding-top:6px}
details.more>summary{cursor:pointer;color:#1f3b57;font-weight:600}
.qs{font-size:14px;color:#2c3e50} math[display=block]{margin:.4em 0}
"""


def _caption(path: str) -> str:
    """A figure's file name as words: ``sub/radial_psd.png`` -> ``radial psd``."""
    return re.sub(r"[_\-]+", " ", Path(path).stem).strip()


def _card(e: RunEntry, results: dict[str, Any] | None, figs: list[str], info: RunInfo) -> str:
    """One notebook on the index: intro, what to look at (numbers by name, figures), questions, all numbers."""
    s = html.escape(e.stem)
    meta = (results or {}).get("meta", {}) if isinstance(results, dict) else {}
    meta = meta if isinstance(meta, dict) else {}
    bits = [f"device {html.escape(info.device)}" if info.device else "",
            f"run {html.escape(info.date)}" if info.date else "",
            f"seed {html.escape(str(meta['seed']))}" if "seed" in meta else ""]
    vers = meta.get("versions") or {}
    if isinstance(vers, dict) and vers:
        bits.append(", ".join(f"{html.escape(str(k))} {html.escape(str(v))}" for k, v in vers.items()))
    links = [f'<a href="{s}.html">read the executed notebook</a>']
    if figs:
        links.append(f'<a href="#{s}-figures">figures ({len(figs)})</a>')
    if results is not None:
        links += [f'<a href="#{s}-results">all recorded numbers</a>', f'<a href="{s}/results.json">results.json</a>']
    prof = info.profile or "profile unknown"
    pcls = {"smoke": "p-smoke", "lab": "p-lab", "paper": "p-paper"}.get(info.profile, "p-unknown")
    parts = [f'<section class="card" id="{s}">',
             f'<h2><a href="{s}.html">{html.escape(e.title)}</a> <span class="pbadge {pcls}">{html.escape(prof)}</span>'
             + (' <span class="badge">run failed</span>' if e.failed else "") + "</h2>"]
    if e.intro:
        parts.append(f'<p class="intro">{markdown_html(e.intro, inline=True)}</p>')
    parts.append(f'<p class="meta">{s}.ipynb · ' + " · ".join(b for b in bits if b) + "</p>")
    parts.append('<p class="links">' + "".join(links) + "</p>")
    parts.append(f'<h3 id="{s}-look">What to look at</h3>')
    nets = [f"<dt>network the figures show</dt><dd>{html.escape(label)}</dd>" if what == "evaluated" else
            f"<dt>{html.escape(what)}</dt><dd>{html.escape(label)}</dd>" for what, label in info.evaluated]
    body = headlines_html(e.stem, results) if results is not None else ""
    if nets:
        body = '<dl class="headlines">' + "".join(nets) + "</dl>" + body
    if body:
        parts.append(body.replace('</dl><dl class="headlines">', ""))
    elif results is None:
        parts.append('<p class="muted">this run wrote no results.json</p>')
    parts.append(f'<div id="{s}-figures">')
    if figs:
        tiles = []
        for f in figs:
            src, cap = html.escape(f), html.escape(_caption(f))
            tiles.append(f'<figure><a href="{src}"><img src="{src}" alt="{cap}"></a>'
                         f'<figcaption title="{src}">{cap}</figcaption></figure>')
        parts.append('<div class="figs">' + "".join(tiles) + "</div>")
    else:
        parts.append('<p class="muted">this run saved no figures</p>')
    parts.append("</div>")
    if e.questions:
        n_q = len(re.findall(r"^\s*\d+\.\s", e.questions, re.MULTILINE))
        parts.append(f'<details class="more"><summary>Questions for a reading group'
                     f'{f" ({n_q})" if n_q else ""}</summary><div class="qs">{markdown_html(e.questions)}</div>'
                     "</details>")
    if results is not None:
        n_val = len(flatten({k: v for k, v in results.items() if k != "meta"}))
        parts.append(f'<details class="more" id="{s}-results"><summary>All recorded numbers '
                     f'(<code>results.json</code>, {n_val} entries)</summary>'
                     f'<div class="tables">{results_html(results)}</div></details>')
    parts.append("</section>")
    return "\n".join(parts)


def _index(entries: list[RunEntry], cards: list[str], runs: Path, banner: str) -> str:
    toc = "".join(f'<li><a href="#{html.escape(e.stem)}">{html.escape(e.stem)}</a></li>' for e in entries)
    built = time.strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fusionlib · executed notebooks</title><style>{_INDEX_CSS}{_BANNER_CSS}</style></head>
<body>
<header><h1>fusionlib · executed notebooks</h1>
<p>Reading-group pages for the multi-modality image fusion suite: each notebook as it ran under
<code>make run</code>, with its outputs, what to look at first (a few numbers from its <code>results.json</code>,
by name, and the figures it saved) and its questions for a reading group. Nothing here needs a network
connection or a Python kernel. On the notebook pages the source listings and the lab exercises are folded:
click to open them.</p>
<p>To re-run a notebook yourself: <code>make run</code> (or open it with <code>make lab</code>).</p></header>
{banner}
<main><ul class="toc">{toc}</ul>
{chr(10).join(cards)}
</main>
<footer>Built {built} from <code>{html.escape(str(runs))}</code> by <code>python -m fusionlib.site</code>;
{len(entries)} notebook(s).</footer>
</body></html>
"""


# --------------------------------------------------------------------------- build

def _swap_in(staging: Path, out: Path) -> None:
    """Move the finished ``staging`` folder onto ``out``; the old site is removed only afterwards."""
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise FileExistsError(f"refusing to replace {out}: it is not empty and not a site built by "
                                  f"fusionlib.site (no {MARKER} marker); choose another --out or remove it")
        trash = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, trash)
        os.replace(staging, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, out)


def build_site(runs: str | Path = "runs", out: str | Path = "site", *, verbose: bool = True,
               weights_dir: str | Path | None = None, commit: str | None = None) -> Path:
    """Build the offline site from ``runs/`` into ``out/``; returns ``out/index.html``.

    ``weights_dir`` (default ``weights/``) is read for the banners' shipped networks; ``commit`` (default:
    this checkout's ``git rev-parse HEAD``) is the commit the banners name.
    """
    from fusionlib.atomic import atomic_write_text

    runs, out = Path(runs), Path(out)
    entries = find_runs(runs)
    commit = commit or git_commit()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        (staging / MARKER).write_text("built by python -m fusionlib.site; safe to delete\n")
        cards, infos = [], []
        for e in entries:
            t0 = time.perf_counter()
            results = None
            if e.results is not None:
                try:
                    results = json.loads(e.results.read_text(), parse_constant=float)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{e.results}: not valid JSON ({err})") from err
                if not isinstance(results, dict):
                    raise ValueError(f"{e.results}: expected a JSON object at the top level")
                (staging / e.stem).mkdir(exist_ok=True)
                shutil.copyfile(e.results, staging / e.stem / "results.json")
            figs = []
            for f in e.figures:
                rel = Path(e.stem) / "figures" / f.relative_to(e.notebook.parent)
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, staging / rel)
                figs.append(rel.as_posix())
            info = run_info(e.stem, e.nb, results, weights_dir)
            infos.append(info)
            nav = (f'<nav class="fl-nav"><a href="index.html">&larr; all notebooks</a>'
                   f'<span class="fl-title">{html.escape(e.title)}</span>'
                   f'<a href="index.html#{e.stem}-look">what to look at</a>'
                   + (f'<a href="index.html#{e.stem}-results">all numbers</a>' if results is not None else "")
                   + "</nav>" + banner_html(info, commit)
                   + '<p class="fl-note">Executed notebook, rendered offline: source listings and lab exercises '
                   "are folded (click a grey bar to open it); interactive widgets appear as a static "
                   "snapshot.</p>")
            atomic_write_text(staging / f"{e.stem}.html", render_notebook(e.notebook, title=e.title, nav=nav))
            cards.append(_card(e, results, figs, info))
            if verbose:
                have = "yes" if results is not None else "none"
                took = time.perf_counter() - t0
                print(f"{e.stem}: page, {len(figs)} figure(s), results {have} ({took:.1f}s)", flush=True)
        atomic_write_text(staging / "index.html",
                          _index(entries, cards, runs, index_banner_html(infos, commit, weights_dir)))
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fusionlib.site", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="runs", help="folder written by `make run` (default: runs)")
    ap.add_argument("--out", default="site", help="folder for the HTML site (default: site)")
    args = ap.parse_args(argv)
    try:
        index = build_site(args.runs, args.out)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"site ready: {index} (open it in a browser; works offline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
