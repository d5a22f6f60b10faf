"""Bug: get_delta_weight returns (B @ A)^T, of shape (in, out): wrong for non-square layers."""
EXPECT_LOSE = ["get_delta_weight_hidden", "get_delta_weight", "merge", "merge_and_unload",
               "unmerge"]


class LoRALinear(LoRALinear):
    def get_delta_weight(self):
        return (self.lora_A.weight.T @ self.lora_B.weight.T) * self.scaling
