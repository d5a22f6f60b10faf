"""The full fine-tuning vs LoRA comparison (course/full_vs_lora.py) runs end to end on a
CPU in seconds (benchmarks/full_vs_lora.py --smoke), with step 3's loop and with the 🤗 Trainer,
and its measurements are consistent: LoRA trains fewer parameters, keeps proportionally less
optimizer state, writes a smaller checkpoint and needs less memory; the JSON round-trips."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from benchmarks import full_vs_lora as bench
from course import full_vs_lora as fvl


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("full_vs_lora")
    return bench.main(["--smoke", "--device", "cpu", "--threads", "1", "--out", str(out)]), out


def test_smoke_run_writes_json_and_four_plots(smoke):
    result, out = smoke
    data = json.loads((out / "full_vs_lora_cpu.json").read_text())
    assert data == json.loads(json.dumps(result.to_json()))
    assert fvl.load(out / "full_vs_lora_cpu.json").table() == result.table()
    for key in ("curves", "quality", "ranks", "costs"):
        assert (out / f"full_vs_lora_cpu_{key}.png").read_bytes()[:4] == b"\x89PNG"
    assert data["meta"]["train_loop"].endswith("sft_exercise.train")  # step 3's answer key


def test_lora_costs_less_than_full_fine_tuning(smoke):
    result, _ = smoke
    full, lora = result.runs
    assert (full.method, lora.method) == ("full", "lora")
    assert full.trainable == full.total and lora.trainable < full.trainable / 20
    # AdamW keeps two fp32 moments per trainable parameter, nothing for frozen ones
    assert full.optimizer_bytes == 8 * full.trainable and lora.optimizer_bytes == 8 * lora.trainable
    assert lora.checkpoint_bytes < full.checkpoint_bytes / 10
    acc_full, acc_lora = full.memory["accounted"], lora.memory["accounted"]
    assert acc_lora["total"] < acc_full["total"] and acc_lora["grads"] == 4 * lora.trainable
    assert acc_lora["activations"] > 0 and acc_full["activations"] > 0
    assert all(r.step_seconds > 0 and r.exact_match is not None for r in result.runs)
    assert [r.r for r in result.sweep] == [1, 2] and result.sweep[1] is lora
    # quality on the exact-match conversations themselves, and forgetting on held-out stories
    assert all(r.test_loss > 0 and r.story_loss > 0 for r in result.runs)
    assert result.base["test_loss"] > 0 and result.base["story_loss"] > 0
    assert result.sweep[0].trainable * 2 == lora.trainable  # r (in + out) per layer


def test_loss_curves_cover_the_run(smoke):
    result, _ = smoke
    steps = result.config["steps"]
    for run in result.runs:
        assert [s for s, _ in run.train_loss] == list(range(1, steps + 1))
        assert run.val_loss[0][0] == 0 and run.val_loss[-1][0] == steps


def test_trainer_fallback_trains_the_same_batches():
    lora, masking, _ = bench.reference_modules()
    config = replace(fvl.Config(**bench.SMOKE), ranks=(), threads=1)
    result = fvl.compare(lora, masking, config=config, base=False, progress=False,
                         device=torch.device("cpu"))
    full, lora_run = result.runs
    assert result.meta["train_loop"] == "train_with_trainer"
    assert full.optimizer_bytes == 8 * full.trainable
    assert full.train_loss[0][1] == pytest.approx(lora_run.train_loss[0][1], rel=1e-5)  # B = 0


def test_truncation_that_leaves_no_example_is_a_clear_error():
    _, masking, _ = bench.reference_modules()
    with pytest.raises(ValueError, match="max_length"):
        fvl.prepare(fvl.Config(steps=1, batch_size=2, max_length=4), masking,
                    torch.device("cpu"))


def test_make_demo_runs_end_to_end(tmp_path, monkeypatch, capsys):
    """`make demo` (course.demo), the README's main command, on a tiny budget: the base model's
    story and held-out failures, then the comparison's table, JSON and plots."""
    from course import demo
    real = fvl.default_config

    def tiny(device=None, **overrides):
        return real(device, **{**overrides, **dict(bench.SMOKE, steps=2, ranks=(1,))})
    monkeypatch.setattr(fvl, "default_config", tiny)
    monkeypatch.setattr(fvl, "pick_device", lambda *a, **k: torch.device("cpu"))
    monkeypatch.setattr(demo, "pick_device", lambda *a, **k: torch.device("cpu"))
    demo.main(["--n-eval", "4", "--out", str(tmp_path), "--no-smollm2"])  # tests/library/
    # test_smollm2.py runs that part
    out = capsys.readouterr().out
    assert "=== 1. It writes stories" in out and "Exact match on 4 held-out" in out
    assert "full fine-tuning" in out and "LoRA r=2" in out and "LoRA r=1" in out
    assert (tmp_path / "full_vs_lora_cpu.json").exists()
    assert (tmp_path / "full_vs_lora_cpu_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_no_private_library_method_is_patched():
    """The Trainer path gets its batches in order from an iterable dataset, not by replacing a
    private Trainer method; settings are one dataclass; measurement lives in course.measure."""
    import inspect

    from course import measure
    source = inspect.getsource(fvl)
    assert "._get_" not in source and "trainer._" not in source
    assert "def activation_bytes" in inspect.getsource(measure)
    assert fvl.Config.from_json(fvl.Config(ranks=(1, 2), lora_lr_by_rank={4: 1e-2}).__dict__
                                ) == fvl.Config(ranks=(1, 2), lora_lr_by_rank={4: 1e-2})
