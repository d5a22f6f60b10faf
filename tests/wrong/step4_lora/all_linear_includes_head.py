"""Bug: "all-linear" also adapts the output head (lm_head), which peft leaves out; with tied
embeddings that even puts LoRA on the input embedding matrix."""
EXPECT_LOSE = ["find_target_modules_hidden", "find_target_modules", "merge_and_unload"]
EXPECT_MESSAGE = "the output head"

_reference_find_target_modules = find_target_modules


def find_target_modules(model, target_modules):
    if isinstance(target_modules, str) and target_modules.lower() == ALL_LINEAR:
        return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return _reference_find_target_modules(model, target_modules)
