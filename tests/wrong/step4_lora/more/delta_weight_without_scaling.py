"""Bug: get_delta_weight returns B @ A without the scaling."""
EXPECT_LOSE = ["get_delta_weight_hidden", "get_delta_weight", "merge", "merge_and_unload",
               "unmerge"]


class LoRALinear(LoRALinear):
    def get_delta_weight(self):
        return self.lora_B.weight @ self.lora_A.weight
