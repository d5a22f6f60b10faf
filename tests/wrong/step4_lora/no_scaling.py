"""Bug: forward leaves out `* scaling`, so alpha has no effect and the update is r/alpha off."""
EXPECT_LOSE = ["lora_linear_forward_hidden", "lora_linear_forward", "merge_and_unload", "unmerge"]
EXPECT_MESSAGE = "scaling is missing"


class LoRALinear(LoRALinear):
    def forward(self, x):
        result = self.base_layer(x)
        if self.merged:
            return result
        return result + self.lora_B(self.lora_A(self.lora_dropout(x)))
