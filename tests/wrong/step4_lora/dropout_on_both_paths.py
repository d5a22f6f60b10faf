"""Bug: dropout is applied to the input of both paths, so the frozen base layer sees dropped-out
inputs in training mode (and the model differs from the base even with B = 0)."""
EXPECT_LOSE = ["lora_linear_forward", "lora_linear_forward_hidden"]
EXPECT_MESSAGE = "dropout on both paths"


class LoRALinear(LoRALinear):
    def forward(self, x):
        if self.merged:
            return self.base_layer(x)
        x = self.lora_dropout(x)
        return self.base_layer(x) + self.lora_B(self.lora_A(x)) * self.scaling
