"""Variant: load_checkpoint returns step 0, so the resumed run starts its schedule over."""
EXPECT_LOSE = ["load_checkpoint_hidden"]

_reference_load_checkpoint = load_checkpoint


def load_checkpoint(path, model, optimizer, scheduler, expect=None):
    out = _reference_load_checkpoint(path, model, optimizer, scheduler, expect)
    return {"step": 0, "extra": out["extra"]}
