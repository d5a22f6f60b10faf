"""Bug: F.dropout(x, p) defaults to training=True, so dropout stays on in eval mode and
evaluation outputs are random."""
EXPECT_LOSE = ["lora_linear_forward_hidden", "lora_linear_forward"]


class LoRALinear(LoRALinear):
    def forward(self, x):
        result = self.base_layer(x)
        if self.merged:
            return result
        p = getattr(self.lora_dropout, "p", 0.0)
        x = torch.nn.functional.dropout(x, p)  # training=True by default
        return result + self.lora_B(self.lora_A(x)) * self.scaling
