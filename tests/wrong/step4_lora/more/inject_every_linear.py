"""Bug: inject_lora ignores target_modules and wraps every nn.Linear (the head included)."""
EXPECT_LOSE = ["inject_lora_hidden", "inject_lora", "merge_and_unload"]


def inject_lora(model, target_modules, r, alpha, dropout=0.0, use_rslora=False, init="kaiming"):
    model.requires_grad_(False)
    for name in [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]:
        model.set_submodule(name, LoRALinear(model.get_submodule(name), r, alpha, dropout,
                                             use_rslora, init))
    return model
