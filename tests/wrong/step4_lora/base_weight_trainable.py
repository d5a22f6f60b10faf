"""Bug: the base layer is not frozen at all, so its weight (and bias) train along with A and B:
full fine-tuning of the targeted layers, with none of LoRA's memory savings."""
EXPECT_LOSE = ["lora_linear_init_hidden", "inject_lora", "lora_linear_init"]
EXPECT_MESSAGE = "base weight left trainable"


class LoRALinear(LoRALinear):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False, init="kaiming"):
        super().__init__(base, r, alpha, dropout, use_rslora, init)
        base.requires_grad_(True)  # as if the freezing line were missing
