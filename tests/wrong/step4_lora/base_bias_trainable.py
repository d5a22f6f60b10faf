"""Bug (a common hand-written version): only the base weight is frozen; its bias stays trainable, so
"LoRA" also fine-tunes every bias of the targeted layers and saves nothing for them."""
EXPECT_LOSE = ["lora_linear_init_hidden", "lora_linear_init"]
EXPECT_MESSAGE = "base bias left trainable"


class LoRALinear(LoRALinear):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False, init="kaiming"):
        nn.Module.__init__(self)
        check_lora_settings(base, r, alpha, dropout, init)
        self.r, self.alpha, self.use_rslora, self.merged = r, alpha, use_rslora, False
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.base_layer = base
        base.weight.requires_grad = False  # the bias is forgotten
        self.lora_A = nn.Linear(base.in_features, r, bias=False, **factory)
        self.lora_B = nn.Linear(r, base.out_features, bias=False, **factory)
        self.lora_dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        if init == "kaiming":
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        else:
            nn.init.normal_(self.lora_A.weight, std=1 / r)
        nn.init.zeros_(self.lora_B.weight)
