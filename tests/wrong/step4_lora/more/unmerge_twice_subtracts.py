"""Bug: unmerge() does not check `merged`, so a second call (or one on an unmerged layer)
subtracts the update from the base weight."""
EXPECT_LOSE = ["unmerge_hidden"]


class LoRALinear(LoRALinear):
    def unmerge(self):
        with torch.no_grad():
            self.base_layer.weight -= self.get_delta_weight()
        self.merged = False
