"""Bug: merge() writes a NaN update into the base weight instead of refusing it."""
EXPECT_LOSE = ["merge_hidden"]


class LoRALinear(LoRALinear):
    def merge(self):
        if self.merged:
            return
        with torch.no_grad():
            self.base_layer.weight += self.get_delta_weight()
        self.merged = True
