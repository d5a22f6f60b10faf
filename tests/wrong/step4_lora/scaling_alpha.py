"""Bug: scaling = alpha instead of alpha / r, so the update is r times too large."""
EXPECT_LOSE = ["lora_linear_init_hidden", "get_delta_weight", "lora_linear_forward",
               "lora_linear_init", "merge", "unmerge"]
EXPECT_MESSAGE = "scaling alpha instead of alpha / r"


class LoRALinear(LoRALinear):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False, init="kaiming"):
        super().__init__(base, r, alpha, dropout, use_rslora, init)
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha  # should be alpha / r
