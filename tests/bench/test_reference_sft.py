"""benchmarks/reference_sft.py (`make bench-reference`) on a tiny budget: it trains, scores the
held-out split before and after, and its probe records exact match every N steps."""
from __future__ import annotations

import json

from benchmarks import reference_sft


def test_reference_run_with_probe_writes_curve(tmp_path):
    out = tmp_path / "ref.json"
    reference_sft.main(["--max-steps", "4", "--batch-size", "4", "--eval-limit", "12",
                        "--probe-every", "2", "--group-by-length", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["test_conversations"] == 12 and res["max_steps"] == 4
    assert [h["step"] for h in res["exact_match_curve"]] == [2, 4]
    assert all(0.0 <= h["exact_match"] <= 1.0 and h["per_task"] for h in res["exact_match_curve"])
    assert res["base_exact_match"] == 0.0 and res["train_minutes"] > 0
