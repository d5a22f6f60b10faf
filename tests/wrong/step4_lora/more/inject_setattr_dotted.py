"""Bug: setattr(model, "model.layers.0.self_attn.q_proj", layer) registers a new module under a
dotted name instead of replacing the nested one: the model still runs the old Linear, and the
LoRA weights never see data."""
EXPECT_LOSE = ["inject_lora_hidden", "merge_and_unload"]


def inject_lora(model, target_modules, r, alpha, dropout=0.0, use_rslora=False, init="kaiming"):
    names = find_target_modules(model, target_modules)
    model.requires_grad_(False)
    for name in names:
        setattr(model, name, LoRALinear(model.get_submodule(name), r, alpha, dropout,
                                        use_rslora, init))
    return model
