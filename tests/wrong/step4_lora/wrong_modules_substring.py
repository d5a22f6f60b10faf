"""Bug: a target matches any name that contains it ("proj" hits every q_proj, "layers.1" hits
layers.10), so LoRA goes into modules nobody asked for."""
EXPECT_LOSE = ["matches_target_hidden", "matches_target"]
EXPECT_MESSAGE = "matches inside a name"


def matches_target(name, target_modules):
    return any(t in name for t in target_modules)
