"""benchmarks/gpu_check.py, the script a session lent a GPU runs as is: its CPU dry run passes
end to end, its time boxes fit 8 minutes, what it leaves in $OUT comes back from the device
machine (few files, shallow), and it imports neither `datasets` nor `trl`."""
from __future__ import annotations

import ast
import json
import tarfile

from benchmarks import gpu_check
from course import REPO_ROOT


def test_time_boxes_fit_eight_minutes():
    assert sum(box for _, box, _ in gpu_check.STEPS) + gpu_check.RESERVE_S <= 8 * 60
    assert gpu_check.BUDGET_S <= 8 * 60
    assert [name for name, _, _ in gpu_check.STEPS] == list(gpu_check.STEP_FUNCTIONS)


def test_no_datasets_or_trl_import():
    tree = ast.parse((REPO_ROOT / "benchmarks" / "gpu_check.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in getattr(node, "names", [])}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"datasets", "trl"}


def test_dry_run_passes_end_to_end(tmp_path):
    report = gpu_check.main(["--dry-run", "--out", str(tmp_path)])
    statuses = {name: step["status"] for name, step in report["steps"].items()}
    assert set(statuses) == set(gpu_check.STEP_FUNCTIONS)
    assert all(s in ("ok", "skipped") for s in statuses.values()), statuses
    assert report["checks"] and all(report["checks"].values()), report["checks"]
    rows = report["steps"]["row_05b"]["result"]["rows"]
    assert rows and all(r["fits"] for r in rows)
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) <= 8 and all(len(f.parts) <= 3 for f in files), files
    assert json.loads((tmp_path / "gpu_check.json").read_text())["dry_run"] is True
    with tarfile.open(tmp_path / "results.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.startswith("benchmarks/results/gpu/") and n.endswith("/sweep.json")
               for n in names), names
    rows = [json.loads(line) for line in tar_member(tmp_path, "sweep.jsonl").splitlines()]
    assert [r["size"] for r in rows] == ["tiny-a", "tiny-a", "tiny-b", "tiny-b"]  # appended


def tar_member(folder, suffix: str) -> str:
    with tarfile.open(folder / "results.tar.gz") as tar:
        [member] = [m for m in tar.getmembers() if m.name.endswith("/" + suffix)]
        return tar.extractfile(member).read().decode()


def test_steps_needing_the_data_are_skipped_without_datasets(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "datasets" else real(name, *a))
    for step in (gpu_check.step_comparison, gpu_check.step_run_sft):
        assert "datasets" in step(tmp_path, dry=False)["skipped"]
