"""Bug: resume does not restore the random number generators: dropout masks (and anything else
random) differ from the uninterrupted run."""
EXPECT_LOSE = ["load_checkpoint", "load_checkpoint_hidden"]
EXPECT_MESSAGE = "RNG"


def load_checkpoint(path, model, optimizer, scheduler, expect=None):
    state = read_checkpoint(path)
    check_compatible(state, model, expect, path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])  # the bug: no set_rng_state
    return {"step": state["step"], "extra": state["extra"]}
