"""Bug: the checkpoint is written straight to its final name: a crash mid-write leaves a
truncated "latest" checkpoint and the previous good one is gone."""
EXPECT_LOSE = ["save_checkpoint_hidden", "save_checkpoint"]
EXPECT_MESSAGE = "not written atomically"


def save_checkpoint(path, model, optimizer, scheduler, step, extra=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng_state(), "step": step,
                "extra": extra or {}}, path)  # the bug: no temporary file + os.replace
    return path
