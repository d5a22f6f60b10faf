"""Step 2's experiment from the command line (`make bench-masking`): the three label variants of
course.masking_ablation, trained and evaluated; JSON + PNG into benchmarks/results/.

    python -m benchmarks.masking_ablation                       # the course's data
    python -m benchmarks.masking_ablation --prompt-noise 40 \
        --out benchmarks/results/masking_ablation_noisy.json    # user turns end in 40 random words
    python -m benchmarks.masking_ablation --steps 20 --eval-limit 32   # quicker
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from course.masking_ablation import FULL, RESULTS, Budget, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field, default in asdict(FULL).items():
        ap.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="JSON; the plot goes next to it")
    args = ap.parse_args(argv)
    budget = Budget(**{f: getattr(args, f) for f in asdict(FULL)})
    res = run(budget, threads=args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    from course.plots import masking_ablation
    masking_ablation(res).savefig(args.out.with_suffix(".png"), dpi=110)
    print(f"{res['total_seconds']} s in all ({res['total_cpu_seconds']} s CPU); wrote "
          f"{args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
