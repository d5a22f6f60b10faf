"""Bug: resume does not restore the scheduler: the learning rate restarts the warmup."""
EXPECT_LOSE = ["load_checkpoint", "load_checkpoint_hidden"]
EXPECT_MESSAGE = "scheduler"


def load_checkpoint(path, model, optimizer, scheduler, expect=None):
    state = read_checkpoint(path)
    check_compatible(state, model, expect, path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])  # the bug: no scheduler.load_state_dict
    set_rng_state(state["rng"])
    return {"step": state["step"], "extra": state["extra"]}
