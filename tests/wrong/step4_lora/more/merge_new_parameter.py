"""Bug: merge() replaces the weight with a new nn.Parameter, which requires grad: the merged
base layer becomes trainable."""
EXPECT_LOSE = ["merge_hidden"]


class LoRALinear(LoRALinear):
    def merge(self):
        if self.merged:
            return
        self.base_layer.weight = nn.Parameter(self.base_layer.weight + self.get_delta_weight())
        self.merged = True
