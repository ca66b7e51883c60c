"""``python -m fusionlib.labs [notebooks] [--out labs] [--solutions]``: write the student notebooks."""

from __future__ import annotations

import argparse

from fusionlib.labs.student import write_labs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fusionlib.labs", description=__doc__)
    ap.add_argument("notebooks", nargs="?", default="notebooks", help="folder of NN_*.ipynb notebooks")
    ap.add_argument("--out", default="labs", help="where the student notebooks go")
    ap.add_argument("--solutions", action="store_true", help="write the filled-in versions (for instructors)")
    a = ap.parse_args(argv)
    written = write_labs(a.notebooks, a.out, solutions=a.solutions)
    if not written:
        print(f"no notebook in {a.notebooks} has exercise cells")
        return 1
    for p in written:
        print("wrote", p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
