"""Teaching text that cannot drift.

1. Learner-facing text speaks of the course only: no internal tracker numbers ("Issue 7"), no
   seed or source-tutorial numbers, no "the seed's example" for a source tutorial, in the notebooks (instructor sources and the generated
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
                      r"\btutorials? \d{3}\b|tutorials this course is built on|"
                      # the source tutorial spoken of as "the seed": a learner has none
                      r"\bseed's\b|\bthe seed\b(?! value| argument| =)",
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
        if path == REPO_ROOT / "tests" / "text" / "test_teaching_text.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if INTERNAL.search(line):
                hits.append(f"{path.relative_to(REPO_ROOT)}:{n}: {line.strip()[:100]}")
    assert not hits, "internal references in the text:\n" + "\n".join(hits)


def pct(x: float) -> str:
    """A share as the course's prose writes it: 0.859 -> '86 %'."""
    return f"{x * 100:.0f} %"


def sci(x: float) -> str:
    """A learning rate as the course writes it: 0.0005 -> '5e-4'."""
    return f"{x:.0e}".replace("e-0", "e-")


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


def _tuning_quotes() -> list[tuple[str, str]]:
    t = _results("full_vs_lora_tuning.json")
    s, base = t["summary"], t["base"]
    val = {m: max(r["val_exact_match"] for r in t["tuning"] if r["method"] == m)
           for m in ("r1", "r4", "r8", "r32")}
    by_loss = {m: min((r for r in t["tuning"] if r["method"] == m),
                      key=lambda r: r["val_loss"])["lr"] for m in ("full", "r8")}
    comp = _results("full_vs_lora_cpu.json")
    full, lora = comp["runs"][0], comp["runs"][1]
    return [
        (f"({s['full']['test_loss']:.3f}, against {s['r8']['test_loss']:.3f} for LoRA r = 8 and "
         f"{s['r32']['test_loss']:.3f} for r = 32)", "test losses"),
        (f"LoRA r = 32 scores {s['r32']['exact_match']:.1%} against full fine-tuning's "
         f"{s['full']['exact_match']:.1%}, within the spread of the seeds "
         f"({s['r32']['exact_match_min']:.1%}–{s['r32']['exact_match_max']:.1%} and "
         f"{s['full']['exact_match_min']:.1%}–{s['full']['exact_match_max']:.1%})",
         "exact match r32 vs full"),
        (f"({s['r32']['per_task']['feeling']:.0%} against "
         f"{s['full']['per_task']['feeling']:.0%})", "feeling task"),
        (f"{s['full']['exact_match']:.1%} against {s['r8']['exact_match']:.1%}, with the seeds "
         f"alone spreading LoRA r = 8 from {s['r8']['exact_match_min']:.1%} to "
         f"{s['r8']['exact_match_max']:.1%}", "full vs r8 and seeds"),
        (f"reach {val['r1']:.0%}, {val['r4']:.0%}, {val['r8']:.0%} and {val['r32']:.0%}",
         "rank sweep on validation"),
        (f"goes from {base['story_loss']:.3f} (base model) to {s['full']['story_loss']:.3f} after "
         f"full fine-tuning, {s['r8']['story_loss']:.3f} after LoRA r = 8 and "
         f"{s['r32']['story_loss']:.3f} after r = 32", "forgetting"),
        (f"full fine-tuning is best at {sci(by_loss['full'])} and LoRA r = 8 at "
         f"{sci(by_loss['r8'])}",
         "rates by validation loss"),
        (f"took {lora['step_seconds'] * 1000:.0f} ms against full fine-tuning's "
         f"{full['step_seconds'] * 1000:.0f} ms", "step times"),
    ]


def test_step4_quotes_the_committed_comparison():
    text = _flat((REPO_ROOT / "solutions" / "step4_lora" / "tutorial.py").read_text())
    missing = [f"{what}: {quote!r}" for quote, what in _tuning_quotes()
               if _flat(quote).replace(" %", "%") not in text.replace(" %", "%")]
    assert not missing, "step 4's text disagrees with benchmarks/results:\n" + "\n".join(missing)


def test_tuned_rates_and_the_learning_rate_check_agree_with_the_tuning():
    """The rates course.full_vs_lora uses by default are the tuned ones; the step 4 check's
    accepted range holds the tuned LoRA rate for r = 8 over the tuned full rate."""
    from course import full_vs_lora as fvl
    tuned = _results("full_vs_lora_tuning.json")["tuned_lr"]
    assert fvl.TUNED_FULL_LR == tuned["full"] and fvl.TUNED_LORA_LR == tuned["r8"]
    assert fvl.TUNED_LORA_LR_BY_RANK == {int(m[1:]): lr for m, lr in tuned.items() if m != "full"}
    text = (REPO_ROOT / "solutions" / "step4_lora" / "tutorial.py").read_text()
    assert f"FULL_LR = {sci(tuned['full'])}" in text
    assert "5 * FULL_LR <= lr <= 20 * FULL_LR" in text
    assert 5 <= tuned["r8"] / tuned["full"] <= 20


def test_readme_and_makefile_agree_on_make_demo():
    readme = (REPO_ROOT / "README.md").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    said = re.search(r"^demo:.*\((~\d+ min) on 2 cores\)", makefile, re.M)
    assert said, "the Makefile's demo target states its time on 2 cores"
    assert f"({said.group(1)} on 2 cores" in readme
    minutes = int(said.group(1)[1:].split()[0])
    comparison = _results("full_vs_lora_cpu.json")["seconds"] / 60  # the demo's main part
    assert comparison <= minutes <= comparison + 1.5, (minutes, comparison)


def test_readme_quotes_the_committed_experiments():
    readme = (REPO_ROOT / "README.md").read_text().replace(" %", "%")
    p = _results("masking_ablation.json")["results"]
    q = _results("masking_ablation_noisy.json")["results"]
    s = _results("full_vs_lora_tuning.json")["summary"]
    base = _results("full_vs_lora_tuning.json")["base"]
    v = ("assistant_only", "no_mask", "no_end_token")
    quotes = [
        "stop rate {:.0%} (assistant-only) / {:.0%} (no mask) / {:.0%} (no end token)".format(
            *(p[k]["stop_rate"] for k in v)),
        "answer loss {:.2f} / {:.2f} / {:.2f}".format(*(p[k]["answer_loss"] for k in v)),
        "prompt loss {:.2f} / {:.2f} / {:.2f}".format(*(p[k]["prompt_loss"] for k in v)),
        f"writes a user turn {p['no_mask']['continuation']['writes_user_turn']:.0%} of the time",
        f"answer loss {q['assistant_only']['answer_loss']:.2f} / {q['no_mask']['answer_loss']:.2f}",
        "exact match {:.1%} / {:.1%} / {:.1%}".format(*(s[m]["exact_match"]
                                                       for m in ("full", "r8", "r32"))),
        "loss per answer token {:.3f} / {:.3f} / {:.3f}".format(
            *(s[m]["test_loss"] for m in ("full", "r8", "r32"))),
        "base {:.3f}, after {:.3f} / {:.3f} / {:.3f}".format(
            base["story_loss"], *(s[m]["story_loss"] for m in ("full", "r8", "r32"))),
    ]
    comparison = _results("full_vs_lora_cpu.json")
    full, lora = comparison["runs"][0], comparison["runs"][1]
    quotes += [
        f"(120 steps, {comparison['seconds'] / 60:.1f} min; full lr {sci(full['lr'])}, "
        f"LoRA {sci(lora['lr'])})",
        f"val loss {full['val_loss'][-1][1]:.3f} vs {lora['val_loss'][-1][1]:.3f}; exact match "
        f"{full['exact_match']:.1%} vs {lora['exact_match']:.1%}",
        f"step {full['step_seconds'] * 1000:.0f} vs {lora['step_seconds'] * 1000:.0f} ms",
    ]
    course = _results("course_time.json")
    times = [_duration(n["wall_s"]) for n in course["notebooks"]]
    quotes.append(f"{_duration(course['total_s'])} (step 1 {times[0]}, step 2 {times[1]}, "
                  f"step 3 {times[2]}, step 4 {times[3]})")
    missing = [q for q in quotes if q not in readme]
    assert not missing, "README disagrees with benchmarks/results:\n" + "\n".join(missing)


def _duration(seconds: float) -> str:
    """How the README writes a run time: seconds under 90 s, minutes with one decimal above."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def test_run_times_in_the_text_come_from_the_results():
    comparison = _results("full_vs_lora_cpu.json")
    step4 = _flat((REPO_ROOT / "solutions" / "step4_lora" / "tutorial.py").read_text())
    assert f"took {comparison['seconds'] / 60:.1f} min on 2 CPU cores" in step4
    run = _results("step3_course_run.json")
    step3 = _flat((REPO_ROOT / "solutions" / "step3_sft" / "tutorial.py").read_text())
    assert (f"**{run['sft_exact_match'] * 100:.1f} %** held-out exact match in "
            f"{run['train_minutes']:.1f} minutes") in step3


def test_step2_double_shift_table_shows_two_different_targets():
    """Step 2's table of what a double shift asks: position by position, the label shifted by
    hand is the label as built one position later, so the two columns differ in every row (the
    bug this replaces zipped two lists by index and printed the same column twice)."""
    import torch

    from course.data import IGNORE_INDEX, tokenize_for_sft
    from course.grading import load_reference
    from course.models import load_tokenizer

    source = (REPO_ROOT / "solutions" / "step2_masking" / "tutorial.py").read_text()
    cell = next(c for c in source.split("\n# %%") if "shifted by hand: predict" in c
                and "Table(" in c)
    shown = {}

    def table(rows, header, width=None):
        shown["rows"], shown["header"] = rows, header
    from course.checks import step2_masking as checks
    namespace = {"tokenize_for_sft": tokenize_for_sft, "single": checks.ONE_EXCHANGE,
                 "tokenizer": load_tokenizer(), "torch": torch, "IGNORE_INDEX": IGNORE_INDEX,
                 "ex": load_reference("step2_masking", "masking_exercise"), "Table": table}
    exec(compile(cell.split("\n", 1)[1], "<double shift cell>", "exec"), namespace)  # noqa: S102
    rows = shown["rows"]
    assert len(rows) >= 3 and all(built != shifted for _, built, shifted in rows)
    for (_, _, shifted), (_, built_next, _) in zip(rows, rows[1:]):
        assert shifted == built_next  # the target after the next one


def test_step2_labels_check_says_whether_the_library_time_was_measured(tmp_path, monkeypatch,
                                                                      capsys):
    """The labels check times the learner's labels now; the library way's time is printed only
    when it was measured now, never a cached figure next to a fresh one."""
    from course.checks import step2_masking as checks
    from course.data import load_split
    from course.grading import load_reference
    from course.models import load_tokenizer

    monkeypatch.setattr(checks, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(checks, "_ENCODINGS", {})
    ex = load_reference("step2_masking", "masking_exercise")
    rows = load_split("train").select(range(20))
    tok = load_tokenizer()
    checks.check_labels_all(ex, tok, rows)
    first = capsys.readouterr().out
    checks.check_labels_all(ex, tok, rows)
    second = capsys.readouterr().out
    assert "measured now" in first and "the library way" in first and "not timed" not in first
    assert "not timed" in second and "read from build/cache/" in second


def test_plots_are_readable():
    """Share axes scaled to their data and labelled in percent; parameter axes without
    scientific notation; the masking figure's legends use the bars' names."""
    import matplotlib
    matplotlib.use("Agg")
    from course import plots

    fig = plots.rank_sweep([1, 4, 8, 32], [9728, 38912, 77824, 311296], [0.04, 0.26, 0.255, 0.475],
                           [1.1, 0.87, 0.78, 0.71], full=(1312896, 0.31, 0.34))
    em = fig.axes[0]
    assert em.get_ylim()[1] < 0.7  # not 0-100 % for bars below 50 %
    labels = [em.xaxis.get_major_formatter()(x, 0) for x in (77824, 1312896)]
    assert labels == ["77.8K", "1.31M"]
    assert em.yaxis.get_major_formatter()(0.25, 0) == "25%"
    res = _results("masking_ablation.json")
    fig = plots.masking_ablation(res)
    bars = {t.get_text() for t in fig.axes[0].get_xticklabels()}
    legend = {t.get_text() for t in fig.axes[-1].get_legend().get_texts()}
    assert legend == bars == set(res["results"]) - {"base"}
    assert fig.axes[0].get_ylim()[1] < 0.1  # exact match of a few percent, on a few-percent axis


def test_one_learning_rate_statement_in_index_and_step_4():
    """The landing page and step 4 give full fine-tuning's and LoRA's rates the same way, and
    step 4 names the source."""
    index = "".join("".join(c["source"]) for c in
                    json.loads((REPO_ROOT / "index.ipynb").read_text())["cells"])
    step4 = _flat((REPO_ROOT / "solutions" / "step4_lora" / "tutorial.py").read_text())
    for text in (index, step4):
        assert "about 1e-5" in text and "5e-6 to 2e-5" in text and "1e-4" in text
        assert "about ten times" in text.replace("ten times more", "ten times")
    assert "LoRA Without Regret" in step4


def test_step3_speed_figures_come_from_the_speed_benchmark():
    """The share of positions the loss scores and the speed-up of computing the output layer
    only there are quoted from benchmarks/results/speed.json (no '~1 in 9', no '1.8x')."""
    from benchmarks.bench_speed import scored_share
    result = _results("speed.json")
    speed = result["speed"]
    speedup = (speed["course_padded"]["supervised_tokens_per_s"]
               / speed["course_padded_full_logits"]["supervised_tokens_per_s"])
    share = scored_share(result)  # '1 position in 10'
    exercise = _flat((REPO_ROOT / "solutions" / "step3_sft" / "sft_exercise.py").read_text()
                     .replace("\n    ", "\n"))
    tutorial = _flat((REPO_ROOT / "solutions" / "step3_sft" / "tutorial.py").read_text())
    assert f"about {share})" in exercise
    assert f"{speedup:.2f}x faster end to end" in exercise
    assert "course_padded_full_logits in benchmarks/results/BENCHMARKS.md" in exercise
    assert f"only at the {share.replace('position ', '')} positions the loss scores" in tutorial
    markdown = (REPO_ROOT / "benchmarks" / "results" / "BENCHMARKS.md").read_text()
    assert f"only {share} is supervised" in markdown


REPO_PATH = re.compile(r"(?<![\w./-])((?:benchmarks|course|docs|tests|solutions|deploy)/"
                       r"[\w./-]*\w\.(?:py|md|json|jsonl|png|yaml|yml|ipynb))")


def test_repository_paths_in_the_text_exist():
    """Every repository file the learner-facing text names (`benchmarks/results/...json`,
    `course/...py`, ...) exists, so a moved or misnamed file fails here."""
    missing = []
    for path in _files(LEARNER_FACING):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for name in REPO_PATH.findall(line):
                if not (REPO_ROOT / name).exists():
                    missing.append(f"{path.relative_to(REPO_ROOT)}:{n}: {name}")
    assert not missing, "files named in the text do not exist:\n" + "\n".join(missing)


def test_one_learning_rate_statement_in_step_3():
    """Step 3 (notebook and module) states the rates as the landing page and step 4 do, and
    the embedded model's rate is the config's default, the notebook's run's and the HF Trainer
    reference's, not the rate the text says derailed a run."""
    from course.sft_config import SFTSettings
    reference = _results("reference_sft.json")["lr"]
    course_run = _results("step3_course_run.json")["config"]["learning_rate"]
    assert SFTSettings.learning_rate == SFTSettings.course_run().learning_rate == reference
    assert course_run == reference
    tutorial = _flat((REPO_ROOT / "solutions" / "step3_sft" / "tutorial.py").read_text())
    exercise = _flat((REPO_ROOT / "solutions" / "step3_sft" / "sft_exercise.py").read_text()
                     .replace("\n    ", "\n"))
    for text in (tutorial, exercise):
        assert "about 1e-5 (5e-6 to 2e-5)" in text and "about ten times more, 1e-4" in text
        assert f"trains at {sci(reference)}" in text
        for stale in ("1e-5 to 5e-6", "1e-4 to 5e-5", "1e-3 to 2e-3", "1e-3 to 3e-3"):
            assert stale not in text, stale
    assert "at 2e-3 one run in three derailed" in tutorial
    assert sci(SFTSettings.learning_rate) != "2e-3"


def _overfitting_quotes() -> list[tuple[str, str]]:
    """Section 10's figures, from benchmarks/results/step3_overfitting.json (percent without
    the space the text puts before '%')."""
    o = _results("step3_overfitting.json")
    runs = {r["epochs"]: r for r in o["runs"]}
    three, thirty = runs[3], runs[30]
    last, best = o["early_stopping"]
    assert not last["restore_best"] and best["restore_best"] and best["restored_best"]
    val3 = [loss for _, loss in three["val_curve"]]
    assert val3 == sorted(val3, reverse=True)  # "still falling"
    per_epoch = o["train_conversations"] // 16
    later = [loss for step, loss in thirty["val_curve"] if step > 5 * per_epoch]
    at5 = dict(thirty["val_curve"])[5 * per_epoch]
    assert max(later) - min(later) < 0.1  # "hardly moves"
    return [
        (f"after 3 epochs the validation loss is still falling ({three['final_val_loss']:.3f})",
         "3 epochs"),
        (f"falls steeply for 5 epochs, to {at5:.3f}, then hardly moves (between "
         f"{min(later):.3f} and {max(later):.3f} over the remaining 25 epochs, "
         f"{thirty['final_val_loss']:.3f} at the end) while the training loss goes on down to "
         f"{thirty['final_train_loss']:.4f}", "30 epochs"),
        (f"stops the 30-epoch run at step {last['steps']}, two evaluations past its best (step "
         f"{last['best_step']}). On {o['test_conversations']} held-out test conversations it "
         f"scores {last['exact_match']:.1%} with the last weights and {best['exact_match']:.1%} "
         f"with the best evaluation's (`restore_best`), but {thirty['exact_match']:.1%} when all "
         f"30 epochs run", "early stopping and restore_best"),
        (f"planned for {thirty['steps']} steps", "the 30-epoch schedule"),
    ]


def test_step3_overfitting_statements_follow_the_committed_runs():
    """Section 9 says the main run does not overfit by the course's one definition (validation
    loss rising from its lowest value): its committed validation curve must be lowest at the
    last evaluation, and the gap it quotes is the committed one. Section 10 quotes the
    committed small-data runs, and what ending on the best weights changed."""
    run = _results("step3_course_run.json")
    losses = [loss for _, loss in run["val_curve"]]
    assert losses[-1] == min(losses)
    step3 = _flat((REPO_ROOT / "solutions" / "step3_sft" / "tutorial.py").read_text())
    assert (f"training loss {run['final_train_loss']:.4f} on the last batch against validation "
            f"loss {run['final_val_loss']:.3f}") in step3
    step3 = step3.replace(" %", "%")
    missing = [f"{what}: {quote!r}" for quote, what in _overfitting_quotes() if quote not in step3]
    assert not missing, "step 3's text disagrees with benchmarks/results:\n" + "\n".join(missing)
    o = _results("step3_overfitting.json")
    (thirty,), (last, best) = [r for r in o["runs"] if r["epochs"] == 30], o["early_stopping"]
    readme = (REPO_ROOT / "README.md").read_text().replace(" %", "%")
    assert (f"training loss falls to {thirty['final_train_loss']:.4f}; early stopping (patience "
            f"2) stops at step {last['steps']}, best at {last['best_step']}: exact match "
            f"{last['exact_match']:.1%} on the last weights, {best['exact_match']:.1%} on the best "
            f"(restored), {thirty['exact_match']:.1%} after all 30 epochs") in readme
