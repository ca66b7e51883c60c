"""Checks on data folders: does a full public dataset match its layout; is the bundle intact.

* :func:`check_layout` walks a user's dataset (e.g. the full MSRS download under ``data_root``) and
  reports missing folders, images without partner, duplicated names, A/B size mismatches and
  unreadable headers, without decoding pixels.
* :func:`verify_manifest` recomputes the SHA-256 of every file listed in ``MANIFEST.sha256``
  (``sha256sum`` format), the d2l-style integrity check of the bundled pairs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from fusionlib.data.io import FusionDataError, image_info
from fusionlib.data.layouts import Layout, get_layout
from fusionlib.data.pairs import _listing, match_pairs

__all__ = ["SplitReport", "LayoutReport", "check_layout", "verify_manifest", "sha256_file"]


@dataclass
class SplitReport:
    """What :func:`check_layout` found for one split (``split`` None for layouts without splits)."""

    split: str | None
    a_dir: Path
    b_dir: Path
    pairs: int = 0
    missing_dirs: list[Path] = field(default_factory=list)
    empty_dirs: list[Path] = field(default_factory=list)
    only_a: list[Path] = field(default_factory=list)
    only_b: list[Path] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """One line per kind of problem, naming the folder and (up to 10) files."""
        out = [f"missing folder: {d}" for d in self.missing_dirs]
        out += [f"empty folder (no images): {d}" for d in self.empty_dirs]
        if self.only_a:
            out.append(
                f"{len(self.only_a)} image(s) in {self.a_dir} without partner in {self.b_dir}: "
                + _listing([p.name for p in self.only_a])
            )
        if self.only_b:
            out.append(
                f"{len(self.only_b)} image(s) in {self.b_dir} without partner in {self.a_dir}: "
                + _listing([p.name for p in self.only_b])
            )
        if self.duplicates:
            out.append("duplicate names: " + _listing([f"{x} & {y.name}" for x, y in self.duplicates]))
        if self.size_mismatch:
            out.append(f"{len(self.size_mismatch)} size mismatch(es): " + _listing(self.size_mismatch))
        if self.unreadable:
            out.append(f"{len(self.unreadable)} unreadable file(s): " + _listing(self.unreadable))
        return out

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class LayoutReport:
    """Result of :func:`check_layout`; ``str(report)`` is a readable summary, ``report.ok`` a bool."""

    root: Path
    layout: Layout
    splits: list[SplitReport]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.splits)

    @property
    def problems(self) -> list[str]:
        return [f"[{s.split or '-'}] {p}" for s in self.splits for p in s.problems]

    @property
    def pairs(self) -> dict[str | None, int]:
        return {s.split: s.pairs for s in self.splits}

    def __str__(self) -> str:
        head = f"layout {self.layout.name!r} under {self.root}: " + ("OK" if self.ok else "PROBLEMS")
        lines = [head]
        for s in self.splits:
            tag = f"split {s.split!r}" if s.split else "pairs"
            rel = [d.relative_to(self.root) if d.is_relative_to(self.root) else d for d in (s.a_dir, s.b_dir)]
            lines.append(f"  {tag}: {s.pairs} matched pairs ({rel[0]} / {rel[1]})")
            lines += [f"    - {p}" for p in s.problems]
        return "\n".join(lines)

    __repr__ = __str__


def _check_split(root: Path, layout: Layout, split: str | None, check_sizes: bool) -> SplitReport:
    a_rel, b_rel = layout.folders(split)
    rep = SplitReport(split, root / a_rel, root / b_rel)
    rep.missing_dirs = [d for d in (rep.a_dir, rep.b_dir) if not d.is_dir()]
    if rep.missing_dirs:
        return rep
    m = match_pairs(rep.a_dir, rep.b_dir)
    rep.empty_dirs = [d for d, n in ((m.a_dir, m.n_a), (m.b_dir, m.n_b)) if n == 0]
    rep.only_a, rep.only_b, rep.duplicates, rep.pairs = m.only_a, m.only_b, m.duplicates, len(m.pairs)
    if check_sizes:
        for _, a, b in m.pairs:
            try:
                ha, hb = image_info(a).size, image_info(b).size
            except FusionDataError as e:
                rep.unreadable.append(str(e))
                continue
            if ha != hb:
                rep.size_mismatch.append(f"{a.name}: {a} {ha[0]}x{ha[1]} vs {b} {hb[0]}x{hb[1]}")
    return rep


def check_layout(
    data_root: str | Path,
    layout: str | Layout,
    split: str | None = None,
    *,
    check_sizes: bool = True,
    strict: bool = False,
) -> LayoutReport:
    """Check that ``data_root`` holds ``layout``'s folders with matching pairs (headers only).

    Args:
        data_root: the dataset root (e.g. ``~/datasets/MSRS``).
        layout: layout name or :class:`Layout`.
        split: one split, or None for all of the layout's splits.
        check_sizes: also read every header and compare A/B sizes.
        strict: raise :class:`FusionDataError` carrying the full report when anything is wrong.

    Returns:
        A :class:`LayoutReport`; print it for a summary of matched pairs and of what is missing.
    """
    lay = get_layout(layout)
    root = Path(data_root)
    splits = [split] if (split is not None or not lay.splits) else list(lay.splits)
    if not root.is_dir():
        reports = []
        for s in splits:
            a_rel, b_rel = lay.folders(s)
            reports.append(SplitReport(s, root / a_rel, root / b_rel, missing_dirs=[root]))
        rep = LayoutReport(root, lay, reports)
    else:
        rep = LayoutReport(root, lay, [_check_split(root, lay, s, check_sizes) for s in splits])
    if strict and not rep.ok:
        raise FusionDataError(str(rep))
    return rep


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_manifest(data_dir: str | Path | None = None, manifest: str = "MANIFEST.sha256") -> list[str]:
    """Recompute the SHA-256 of every file listed in ``data_dir/manifest``; return the problems.

    Lines are ``<64 hex>  <path>`` (``sha256sum`` output; a ``*`` before the path is accepted), paths
    relative to ``data_dir``. An empty list means every listed file is present and unchanged.
    ``data_dir`` defaults to the bundled data folder.

    Raises:
        FusionDataError: the folder or the manifest file does not exist.
    """
    if data_dir is None:
        from fusionlib.data.bundled import get_data_dir

        data_dir = get_data_dir()
    d = Path(data_dir)
    mf = d / manifest
    if not mf.is_file():
        raise FusionDataError(f"manifest not found: {mf}")
    problems: list[str] = []
    n = 0
    for lineno, line in enumerate(mf.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            problems.append(f"{mf}:{lineno}: malformed line {line!r}")
            continue
        digest, rel = parts[0].lower(), parts[1].lstrip("*")
        f = d / rel
        n += 1
        if not f.is_file():
            problems.append(f"missing file: {f} (listed in {mf.name} line {lineno})")
        elif sha256_file(f) != digest:
            problems.append(f"checksum mismatch: {f} (modified or corrupt; expected sha256 {digest[:12]}...)")
    if n == 0:
        problems.append(f"{mf} lists no files")
    return problems
