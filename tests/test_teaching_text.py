"""Teaching text that cannot drift.

1. Learner-facing text speaks of the course only: no internal tracker numbers ("Issue 7"), no
   seed or source-tutorial numbers, in the notebooks (instructor sources and the generated
   ones), the exercise modules, the landing page, README.md and docs/ -- nor in the docstrings
   of the course's code, benchmarks and tests.
2. Every figure the prose quotes from an experiment is the committed results JSON's value,
   formatted as the text prints it: a rerun that changes a result fails here until the text is
   updated.
"""
from __future__ import annotations

import json
import re

import pytest

from course import REPO_ROOT

INTERNAL = re.compile(r"\bissues?\s*#?\d+|\bseed(?:'s)? recipe\b|\bseed \d{3}\b|"
                      r"\btutorials? \d{3}\b|tutorials this course is built on",
                      re.IGNORECASE)
LEARNER_FACING = (["README.md", "index.ipynb"] + ["docs/**/*.md", "solutions/*/tutorial.py",
                  "solutions/*/tutorial.ipynb", "solutions/*/*_exercise.py", "step*/*.ipynb",
                  "step*/*.py"])
CODE = ["course/**/*.py", "benchmarks/**/*.py", "tests/**/*.py", "Makefile"]


def _files(patterns):
    seen = set()
    for pattern in patterns:
        for path in sorted(REPO_ROOT.glob(pattern)):
            if path.is_file() and path not in seen and "__pycache__" not in path.parts:
                seen.add(path)
                yield path


@pytest.mark.parametrize("kind", ["learner-facing", "code"])
def test_no_internal_tracker_or_source_references(kind):
    hits = []
    for path in _files(LEARNER_FACING if kind == "learner-facing" else CODE):
        if path == REPO_ROOT / "tests" / "test_teaching_text.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if INTERNAL.search(line):
                hits.append(f"{path.relative_to(REPO_ROOT)}:{n}: {line.strip()[:100]}")
    assert not hits, "internal references in the text:\n" + "\n".join(hits)


def pct(x: float) -> str:
    """A share as the course's prose writes it: 0.859 -> '86 %'."""
    return f"{x * 100:.0f} %"


def _results(name: str) -> dict:
    return json.loads((REPO_ROOT / "benchmarks" / "results" / name).read_text())


def _masking_quotes() -> list[tuple[str, str]]:
    plain, noisy = _results("masking_ablation.json"), _results("masking_ablation_noisy.json")
    p, q = plain["results"], noisy["results"]

    def last8(r, part=None):
        rows = r["train_split"][-8:] if part is not None else r["train_loss"][-8:]
        values = [x[part] for x in rows] if part is not None else rows
        return sum(values) / len(values)
    return [
        (f"took {plain['total_cpu_seconds']:.0f} s of CPU", "step 2's experiment time"),
        (f"{plain['total_seconds']:.0f} s of wall time", "step 2's experiment wall time"),
        (f"run: {p['no_mask']['prompt_loss']:.2f} on held-out prompts, against "
         f"{p['assistant_only']['prompt_loss']:.2f} for `assistant_only`", "prompt losses"),
        (f"from the base model's {p['base']['prompt_loss']:.2f}", "base prompt loss"),
        (f"writes the user's next question in "
         f"{pct(p['no_mask']['continuation']['writes_user_turn'])}", "no_mask continuation"),
        (f"`assistant_only` in {pct(p['assistant_only']['continuation']['writes_user_turn'])}",
         "assistant_only continuation"),
        (f"{last8(p['no_mask'], 1):.2f}\n#   on prompt tokens, {last8(p['no_mask']):.2f} in all",
         "no_mask training loss split"),
        (f"({p['no_mask']['answer_loss']:.2f} vs {p['assistant_only']['answer_loss']:.2f} held "
         f"out)", "answer losses"),
        (f"({pct(p['no_mask']['stop_rate'])} vs {pct(p['assistant_only']['stop_rate'])})",
         "stop rates"),
        (f"held-out prompt loss {q['no_mask']['prompt_loss']:.2f}, the base model "
         f"{q['base']['prompt_loss']:.2f}", "noisy prompt loss"),
        (f"after {pct(q['no_mask']['continuation']['writes_user_turn'])} of the answers",
         "noisy continuation"),
        (f"training loss ({last8(q['no_mask']):.2f} over the last 8 steps)", "noisy train loss"),
        (f"answer-token loss ({last8(q['no_mask'], 0):.2f})", "noisy answer part"),
        (f"({last8(q['no_mask'], 0):.2f} vs {last8(q['assistant_only'], 0):.2f})",
         "noisy answer parts"),
        (f"({q['no_mask']['answer_loss']:.2f} vs {q['assistant_only']['answer_loss']:.2f})",
         "noisy held-out answer losses"),
    ]


def _flat(text: str) -> str:
    """Markdown in percent format, as one line: comment markers and line breaks removed."""
    return re.sub(r"\s+", " ", re.sub(r"\n# ?", "\n", text))


def test_step2_quotes_the_committed_experiment():
    text = _flat((REPO_ROOT / "solutions" / "step2_masking" / "tutorial.py").read_text())
    missing = [f"{what}: {quote!r}" for quote, what in _masking_quotes()
               if _flat(quote) not in text]
    assert not missing, "step 2's text disagrees with benchmarks/results:\n" + "\n".join(missing)
