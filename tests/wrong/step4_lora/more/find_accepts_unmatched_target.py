"""Bug: a target that matches nothing (a typo such as "qproj") is accepted silently."""
EXPECT_LOSE = ["find_target_modules_hidden", "find_target_modules"]

_reference_find_target_modules = find_target_modules


def find_target_modules(model, target_modules):
    if isinstance(target_modules, str):
        return _reference_find_target_modules(model, target_modules)
    names = [n for n, _ in model.named_modules() if n and matches_target(n, target_modules)]
    for name in names:
        if not isinstance(model.get_submodule(name), nn.Linear):
            raise TypeError(f"{name} is not an nn.Linear")
    return names
