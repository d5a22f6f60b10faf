"""Bug: forward ignores `merged` and always adds the LoRA path, so after merge() the update is
counted twice."""
EXPECT_LOSE = ["lora_linear_forward_hidden", "lora_linear_forward", "merge"]
EXPECT_MESSAGE = "counted twice after merge"


class LoRALinear(LoRALinear):
    def forward(self, x):
        return self.base_layer(x) + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling
