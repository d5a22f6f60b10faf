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
        return LoraConfig(r=4)

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
        assert ex.by_peft().r == 4
        assert not w.shortcuts
    assert SHORTCUT_USED.endswith(".ShortcutUsed")
