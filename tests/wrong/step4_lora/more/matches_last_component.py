"""Bug: only the last name component is compared, so dotted targets ("self_attn.q_proj") and
full names never match."""
EXPECT_LOSE = ["matches_target_hidden", "matches_target"]


def matches_target(name, target_modules):
    return name.split(".")[-1] in target_modules
