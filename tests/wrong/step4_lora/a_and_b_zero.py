"""Bug: A and B both start at zero. The layer equals the base at init, but neither matrix ever
gets a gradient (dL/dB needs A x, dL/dA needs B), so LoRA never learns."""
EXPECT_LOSE = ["lora_linear_init_hidden", "lora_linear_init"]
EXPECT_MESSAGE = "A must start random"


class LoRALinear(LoRALinear):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False, init="kaiming"):
        super().__init__(base, r, alpha, dropout, use_rslora, init)
        nn.init.zeros_(self.lora_A.weight)  # should be kaiming-uniform (or gaussian)
