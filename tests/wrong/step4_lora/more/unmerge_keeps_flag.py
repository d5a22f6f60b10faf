"""Bug: unmerge() restores W but leaves merged = True, so forward skips the LoRA path."""
EXPECT_LOSE = ["unmerge_hidden", "unmerge"]


class LoRALinear(LoRALinear):
    def unmerge(self):
        if not self.merged:
            return
        with torch.no_grad():
            self.base_layer.weight -= self.get_delta_weight()
