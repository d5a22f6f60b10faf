"""Bug: endswith(target) without the dot: "_proj" or "proj" match every q_proj."""
EXPECT_LOSE = ["matches_target_hidden", "matches_target"]


def matches_target(name, target_modules):
    return any(name.endswith(t) for t in target_modules)
