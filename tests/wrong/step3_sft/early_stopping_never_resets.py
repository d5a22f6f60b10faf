"""Bug: the count of bad evaluations never goes back to 0 after an improvement, so a run with
a few scattered bad evaluations stops although it is still improving."""
EXPECT_LOSE = ["early_stopping", "early_stopping_hidden"]
EXPECT_MESSAGE = "never resets"


def _early_step(self, val_loss):
    if val_loss < self.best - self.min_delta:
        self.best = float(val_loss)  # the bug: bad_evals not reset
    else:
        self.bad_evals += 1
    return self.patience is not None and self.bad_evals >= self.patience


EarlyStopping.step = _early_step
