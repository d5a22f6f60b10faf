"""Bug: use_rslora is ignored, so rank-stabilised LoRA scales by alpha / r, not alpha / sqrt(r)."""
EXPECT_LOSE = ["lora_linear_init_hidden", "lora_linear_init"]
EXPECT_MESSAGE = "rsLoRA scaling"


class LoRALinear(LoRALinear):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False, init="kaiming"):
        super().__init__(base, r, alpha, dropout, use_rslora, init)
        self.scaling = alpha / r
