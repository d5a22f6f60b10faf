"""Bug: resume restores the weights but not the optimizer: AdamW restarts with zero moments,
so the first steps after a resume are far too large."""
EXPECT_LOSE = ["load_checkpoint", "load_checkpoint_hidden"]
EXPECT_MESSAGE = "optimizer state"


def load_checkpoint(path, model, optimizer, scheduler, expect=None):
    state = read_checkpoint(path)
    check_compatible(state, model, expect, path)
    model.load_state_dict(state["model"])
    scheduler.load_state_dict(state["scheduler"])  # the bug: no optimizer.load_state_dict
    set_rng_state(state["rng"])
    return {"step": state["step"], "extra": state["extra"]}
