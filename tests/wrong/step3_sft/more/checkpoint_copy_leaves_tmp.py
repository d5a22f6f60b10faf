"""Variant: the temporary file is copied over the checkpoint (not renamed) and left behind."""
EXPECT_LOSE = ["save_checkpoint_hidden"]


def save_checkpoint(path, model, optimizer, scheduler, step, extra=None):
    import shutil
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng_state(), "step": step,
                "extra": extra or {}}, tmp)
    shutil.copyfile(tmp, path)
    return path
