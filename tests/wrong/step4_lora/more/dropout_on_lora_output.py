"""Bug: dropout is applied after B (to the LoRA output) instead of to the LoRA input."""
EXPECT_LOSE = ["lora_linear_forward_hidden"]


class LoRALinear(LoRALinear):
    def forward(self, x):
        result = self.base_layer(x)
        if self.merged:
            return result
        return result + self.lora_dropout(self.lora_B(self.lora_A(x))) * self.scaling
