"""Bug: a common hand-written layout, A = Parameter(in, r) and B = Parameter(r, out) with
x @ A @ B: the update is right, but lora_A.weight / lora_B.weight do not exist, so nothing
that reads peft's names (saving, merging, the tests) works."""
EXPECT_LOSE = ["lora_linear_init_hidden", "lora_linear_forward_hidden", "get_delta_weight_hidden",
               "merge_hidden", "unmerge_hidden", "adapter_state_dict", "get_delta_weight",
               "inject_lora", "lora_linear_forward", "lora_linear_init", "merge",
               "merge_and_unload", "unmerge"]


class LoRALinear(LoRALinear):
    def __init__(self, base, r, alpha, dropout=0.0, use_rslora=False, init="kaiming"):
        nn.Module.__init__(self)
        check_lora_settings(base, r, alpha, dropout, init)
        self.r, self.alpha, self.use_rslora, self.merged = r, alpha, use_rslora, False
        self.base_layer = base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.randn(base.in_features, r) / r)
        self.lora_B = nn.Parameter(torch.zeros(r, base.out_features))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r

    def forward(self, x):
        result = self.base_layer(x)
        if self.merged:
            return result
        return result + (self.lora_dropout(x) @ self.lora_A @ self.lora_B) * self.scaling
