"""Bug: inject_lora passes only r and alpha on: dropout, rsLoRA and the init are lost."""
EXPECT_LOSE = ["inject_lora_hidden"]


def inject_lora(model, target_modules, r, alpha, dropout=0.0, use_rslora=False, init="kaiming"):
    names = find_target_modules(model, target_modules)
    model.requires_grad_(False)
    for name in names:
        model.set_submodule(name, LoRALinear(model.get_submodule(name), r, alpha))
    return model
