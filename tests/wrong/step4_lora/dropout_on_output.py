"""Bug: dropout is applied to the layer's whole output instead of the LoRA path's input, so the
frozen base path is perturbed too (and the model differs from the base in training mode)."""
EXPECT_LOSE = ["lora_linear_forward_hidden", "lora_linear_forward"]
EXPECT_MESSAGE = "dropout on the output"


class LoRALinear(LoRALinear):
    def forward(self, x):
        result = self.base_layer(x)
        if self.merged:
            return result
        return self.lora_dropout(result + self.lora_B(self.lora_A(x)) * self.scaling)
