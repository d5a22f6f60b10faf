"""Bug: merge() does not check `merged`, so a second call adds the update a second time."""
EXPECT_LOSE = ["merge_hidden", "merge"]
EXPECT_MESSAGE = "merging twice"


class LoRALinear(LoRALinear):
    def merge(self):
        with torch.no_grad():
            self.base_layer.weight += self.get_delta_weight()
        self.merged = True
