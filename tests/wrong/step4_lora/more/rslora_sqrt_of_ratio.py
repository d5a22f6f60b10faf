"""Bug: rsLoRA scaling written as sqrt(alpha / r) instead of alpha / sqrt(r)."""
EXPECT_LOSE = ["lora_linear_init_hidden", "lora_linear_init"]


class LoRALinear(LoRALinear):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False, init="kaiming"):
        super().__init__(base, r, alpha, dropout, use_rslora, init)
        if use_rslora:
            self.scaling = math.sqrt(alpha / r)
