"""Validate a notebook with nbgrader's Validator API (the `nbgrader validate` command exits 0
even when tests fail, so scripts and CI cannot rely on it).

    python -m course.nbgrader.validate solutions/step1_data/tutorial.ipynb      # all tests pass?
    python -m course.nbgrader.validate step1_data/tutorial.ipynb --invert       # none passes?

Exits 1 on failure and prints which test cells failed (or passed, with --invert).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course.nbgrader.config import cell_timeout


def validate(path: Path, invert: bool = False) -> dict[str, list[dict]]:
    """nbgrader's validation results: {} when the notebook validates; else lists of cells under
    'failed' (or 'passed' with invert=True, 'changed', 'type_changed')."""
    from nbgrader.validator import Validator
    from traitlets.config import Config

    config = Config()
    config.Execute.timeout = cell_timeout()
    config.Validator.invert = invert
    return Validator(config=config).validate(str(Path(path).resolve()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--invert", action="store_true",
                    help="succeed only if no test passes (a fresh release)")
    args = ap.parse_args(argv)
    results = validate(args.notebook, args.invert)
    for kind, cells in results.items():
        print(f"{kind}: {len(cells)} cell(s)")
        for cell in cells:
            print("  " + cell["source"].splitlines()[0][:90] if cell["source"] else "  (empty)")
            if "raw_error" in cell:
                print("    " + cell["raw_error"].strip().splitlines()[-1][:200])
    print("VALID" if not results else "NOT VALID")
    return 1 if results else 0


if __name__ == "__main__":
    sys.exit(main())
