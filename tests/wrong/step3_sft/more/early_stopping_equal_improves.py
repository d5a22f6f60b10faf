"""Variant: a loss equal to the best counts as an improvement (<= instead of <), so a plateau
never stops."""
EXPECT_LOSE = ["early_stopping_hidden"]


def _early_step(self, val_loss):
    if val_loss <= self.best - self.min_delta:
        self.best, self.bad_evals = float(val_loss), 0
    else:
        self.bad_evals += 1
    return self.patience is not None and self.bad_evals >= self.patience


EarlyStopping.step = _early_step
