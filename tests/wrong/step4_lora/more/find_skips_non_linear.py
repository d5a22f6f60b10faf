"""Bug: a target that names a non-Linear module (e.g. "mlp") is skipped silently instead of
raising TypeError."""
EXPECT_LOSE = ["find_target_modules_hidden", "find_target_modules"]

_reference_find_target_modules = find_target_modules


def find_target_modules(model, target_modules):
    if isinstance(target_modules, str):
        return _reference_find_target_modules(model, target_modules)
    return [n for n, m in model.named_modules()
            if n and matches_target(n, target_modules) and isinstance(m, nn.Linear)]
