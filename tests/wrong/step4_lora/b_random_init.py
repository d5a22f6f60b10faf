"""Bug: B is initialised randomly like A, so the adapted model no longer equals the base model
at step 0 (training starts from a randomly perturbed model)."""
EXPECT_LOSE = ["lora_linear_init_hidden", "inject_lora", "lora_linear_init"]
EXPECT_MESSAGE = "B must start at zero"


class LoRALinear(LoRALinear):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False, init="kaiming"):
        super().__init__(base, r, alpha, dropout, use_rslora, init)
        nn.init.kaiming_uniform_(self.lora_B.weight, a=math.sqrt(5))  # should stay zero
