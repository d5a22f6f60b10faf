"""By hand means by hand (course/sandbox/by_hand.py): in a step's grading worker the library
shortcut of its hand-written exercise raises ShortcutUsed, naming the learner's function; the
rest of the module works, and other steps' workers keep the library."""
from __future__ import annotations

import textwrap

import pytest

from course.models import load_tokenizer
from course.sandbox.by_hand import ENV
from course.sandbox.client import SHORTCUT_USED, Worker
from course.sandbox.jail import worker_environment

LEARNER = textwrap.dedent("""
    import peft                                   # at import: allowed, nothing is used yet
    from peft import LoraConfig

    def template(messages, tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False)

    def by_peft():
        import torch
        return peft.get_peft_model(torch.nn.Sequential(torch.nn.Linear(4, 4)),
                                   LoraConfig(r=2, target_modules=["0"]))

    def config():
        return LoraConfig(r=4).r

    def by_trainer():
        import transformers
        return transformers.Trainer(model=None)

    def honest(x):
        return 2 * x
""")


def _worker(tmp_path, step):
    (tmp_path / "learner.py").write_text(LEARNER, encoding="utf-8")
    return Worker(tmp_path, env=worker_environment({ENV: step}))


@pytest.mark.parametrize("step, function, message", [
    ("step1_data", "template", "template calls apply_chat_template: write the template by hand"),
    ("step4_lora", "by_peft", "by_peft calls peft: write LoRALinear"),
    ("step3_sft", "by_trainer", "by_trainer calls the HF Trainer: write the training loop"),
])
def test_the_shortcut_raises_and_names_the_function(tmp_path, step, function, message):
    args = ([{"role": "user", "content": "Hi"}], load_tokenizer()) if function == "template" \
        else ()
    with _worker(tmp_path, step) as w:
        ex = w.module("learner")
        with pytest.raises(Exception) as caught:
            getattr(ex, function)(*args)
        assert type(caught.value).__name__ == "ShortcutUsed" and message in str(caught.value)
        assert w.shortcuts and message in w.shortcuts[0]
        assert ex.honest(21) == 42


def test_other_steps_keep_the_library(tmp_path):
    with _worker(tmp_path, "step2_masking") as w:
        ex = w.module("learner")
        text = ex.template([{"role": "user", "content": "Hi"}], load_tokenizer())
        assert text.startswith("<|im_start|>user\nHi<|im_end|>")
        assert ex.config() == 4
        assert not w.shortcuts
    assert SHORTCUT_USED.endswith(".ShortcutUsed")


def test_the_courses_own_code_in_the_worker_keeps_the_library(tmp_path):
    """A probe of the course (no learner function on the stack) may build a peft layer in a
    step-4 worker; the learner's function may not."""
    probe = ("import peft, torch\n"
             "m = peft.get_peft_model(torch.nn.Sequential(torch.nn.Linear(4, 4)),\n"
             "                        peft.LoraConfig(r=2, target_modules=['0']))\n"
             "n = sum(p.numel() for p in m.parameters() if p.requires_grad)\n")
    with _worker(tmp_path, "step4_lora") as w:
        ex = w.module("learner")
        assert w.exec_cell(probe, "<probe>", {}, ["n"]) == {"n": 16} and not w.shortcuts
        with pytest.raises(Exception, match="by_peft calls peft"):
            ex.by_peft()


def test_the_notebooks_visible_check_says_it_too(tmp_path, monkeypatch):
    """In the learner's own kernel the visible check of format_conversation meets the same
    guard, and the library works again right after it."""
    from course.checks.step1_data import check_format_conversation
    from course.grading import CheckFailed
    (tmp_path / "mine.py").write_text(LEARNER.replace("import peft", "").replace(
        "from peft import LoraConfig", "") + "\nformat_conversation = lambda m, t, "
        "add_generation_prompt=False: {'text': template(m, t), 'input_ids': []}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import mine
    tokenizer = load_tokenizer()
    with pytest.raises(CheckFailed, match="calls apply_chat_template: write the template by"):
        check_format_conversation(mine, tokenizer)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
