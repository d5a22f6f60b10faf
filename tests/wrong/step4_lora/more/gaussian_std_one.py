"""Bug: the gaussian init uses std 1 (torch.randn, as a quick sketch might do) instead of
std 1/r, so the first updates are r times larger than peft's."""
EXPECT_LOSE = ["lora_linear_init_hidden", "lora_linear_init"]


class LoRALinear(LoRALinear):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False, init="kaiming"):
        super().__init__(base, r, alpha, dropout, use_rslora, init)
        if init == "gaussian":
            nn.init.normal_(self.lora_A.weight, std=1.0)
