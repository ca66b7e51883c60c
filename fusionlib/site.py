"""A static, offline site of the executed notebooks: ``python -m fusionlib.site --runs runs --out site``.

``make run`` leaves ``runs/NN_name/NN_name.ipynb`` (executed by papermill), ``results.json`` and the
figures the notebook saved. This module turns them into pages a reading group opens in a browser
without a network connection and without running anything:

- ``site/NN_name.html``: the executed notebook (nbconvert's ``lab`` template) with every remote
  ``<script>``/``<link>`` left out (require.js, MathJax, mermaid, the widget manager). Plots are
  already inline base64 PNGs; formulas stay readable as their TeX source; an ipywidgets output is
  replaced by a static snapshot of its saved state (e.g. a finished tqdm bar).
- ``site/NN_name/figures/...``: every PNG/SVG the run wrote under ``runs/NN_name/``, and
  ``site/NN_name/results.json``.
- ``site/index.html``: one card per notebook linking its page, its results table (``results.json``
  with nested keys flattened) and its figures.

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
           "render_notebook", "build_site", "main"]

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
        entries.append(RunEntry(d.name, nb_path, res if res.is_file() else None, figs, title, intro, failed))
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


_PAGE_CSS = """
<style>
 .fl-nav{position:sticky;top:0;z-index:10;background:#1f3b57;color:#fff;padding:6px 16px;
   font:14px/1.4 system-ui,sans-serif;display:flex;gap:18px;align-items:center}
 .fl-nav a{color:#cfe3ff;text-decoration:none} .fl-nav a:hover{text-decoration:underline}
 .fl-nav .fl-title{font-weight:600;flex:1}
 .fl-widget{font:13px monospace;display:flex;gap:8px;align-items:center;padding:2px 0}
 .fl-muted{color:#777} .fl-note{font:13px system-ui,sans-serif;color:#555;padding:4px 16px}
</style>
"""

_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}{{ resources.fusionlib_css }}{% endblock extra_css %}
{%- block body_header -%}{{ super() }}{{ resources.fusionlib_nav }}{%- endblock body_header -%}
"""


def render_notebook(nb_path: str | Path, *, title: str | None = None, nav: str = "") -> str:
    """One executed notebook as a self-contained offline HTML page (``lab`` template, no remote
    scripts or styles; formulas left as TeX; widgets as static snapshots). ``nav`` is HTML placed at
    the top of the body."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    nb_path = Path(nb_path)
    nb = nbformat.read(nb_path, as_version=4)
    _static_widgets(nb)
    exporter = HTMLExporter(template_name="lab", template_file="fusionlib_offline.html.j2",
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
.intro{margin:6px 0 8px;color:#34495e} .meta{font-size:13px;color:#667}
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
"""


def _inline_code(text: str) -> str:
    """Escape plain text, turning ``code`` spans into <code>."""
    return re.sub(r"`+([^`]+)`+", r"<code>\1</code>", html.escape(text))


def _card(e: RunEntry, results: dict[str, Any] | None, figs: list[str]) -> str:
    s = html.escape(e.stem)
    meta = (results or {}).get("meta", {}) if isinstance(results, dict) else {}
    bits = [f"{k} {html.escape(str(meta[k]))}" for k in ("profile", "device", "seed", "written") if k in meta]
    vers = meta.get("versions") or {}
    if isinstance(vers, dict) and vers:
        bits.append(", ".join(f"{html.escape(str(k))} {html.escape(str(v))}" for k, v in vers.items()))
    links = [f'<a href="{s}.html">read the executed notebook</a>']
    if results is not None:
        links += [f'<a href="#{s}-results">results table</a>', f'<a href="{s}/results.json">results.json</a>']
    if figs:
        links.append(f'<a href="#{s}-figures">figures ({len(figs)})</a>')
    parts = [f'<section class="card" id="{s}">',
             f'<h2><a href="{s}.html">{html.escape(e.title)}</a>'
             + (' <span class="badge">run failed</span>' if e.failed else "") + "</h2>"]
    if e.intro:
        parts.append(f'<p class="intro">{_inline_code(e.intro)}</p>')
    parts.append(f'<p class="meta">{s}.ipynb' + (" · " + " · ".join(bits) if bits else "") + "</p>")
    parts.append('<p class="links">' + "".join(links) + "</p>")
    parts.append(f'<h3 id="{s}-results">Results</h3>')
    if results is None:
        parts.append('<p class="muted">this run wrote no results.json</p>')
    else:
        parts.append(f'<div class="tables">{results_html(results)}</div>')
    parts.append(f'<h3 id="{s}-figures">Figures</h3>')
    if figs:
        tiles = []
        for f in figs:
            src, name = html.escape(f), html.escape(Path(f).name)
            tiles.append(f'<figure><a href="{src}"><img src="{src}" alt="{name}"></a>'
                         f"<figcaption>{name}</figcaption></figure>")
        parts.append('<div class="figs">' + "".join(tiles) + "</div>")
    else:
        parts.append('<p class="muted">this run saved no figures</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _index(entries: list[RunEntry], cards: list[str], runs: Path) -> str:
    toc = "".join(f'<li><a href="#{html.escape(e.stem)}">{html.escape(e.stem)}</a></li>' for e in entries)
    built = time.strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fusionlib · executed notebooks</title><style>{_INDEX_CSS}</style></head>
<body>
<header><h1>fusionlib · executed notebooks</h1>
<p>Reading-group pages for the multi-modality image fusion suite: each notebook as it ran under
<code>make run</code>, with its outputs, the numbers it recorded in <code>results.json</code> and the figures
it saved. Nothing here needs a network connection or a Python kernel; formulas are shown as their TeX
source.</p>
<p>To re-run a notebook yourself: <code>make run</code> (or open it with <code>make lab</code>).</p></header>
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


def build_site(runs: str | Path = "runs", out: str | Path = "site", *, verbose: bool = True) -> Path:
    """Build the offline site from ``runs/`` into ``out/``; returns ``out/index.html``."""
    from fusionlib.atomic import atomic_write_text

    runs, out = Path(runs), Path(out)
    entries = find_runs(runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        (staging / MARKER).write_text("built by python -m fusionlib.site; safe to delete\n")
        cards = []
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
            nav = (f'<nav class="fl-nav"><a href="index.html">&larr; all notebooks</a>'
                   f'<span class="fl-title">{html.escape(e.title)}</span>'
                   + (f'<a href="index.html#{e.stem}-results">results</a>' if results is not None else "")
                   + (f'<a href="index.html#{e.stem}-figures">figures</a>' if figs else "") + "</nav>"
                   '<p class="fl-note">Executed notebook, rendered offline: formulas appear as TeX source, '
                   "interactive widgets as a static snapshot.</p>")
            atomic_write_text(staging / f"{e.stem}.html", render_notebook(e.notebook, title=e.title, nav=nav))
            cards.append(_card(e, results, figs))
            if verbose:
                have = "yes" if results is not None else "none"
                took = time.perf_counter() - t0
                print(f"{e.stem}: page, {len(figs)} figure(s), results {have} ({took:.1f}s)", flush=True)
        atomic_write_text(staging / "index.html", _index(entries, cards, runs))
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
