"""Bug: the checkpoint does not hold the RNG states, so no resume can restore them."""
EXPECT_LOSE = ["save_checkpoint_hidden", "save_checkpoint"]
EXPECT_MESSAGE = "missing ['rng']"


def save_checkpoint(path, model, optimizer, scheduler, step, extra=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step,  # the bug: no "rng"
                "extra": extra or {}}, tmp)
    os.replace(tmp, path)
    return path
