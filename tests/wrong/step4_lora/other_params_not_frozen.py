"""Bug: inject_lora wraps the targets but does not freeze the rest of the model, so embeddings,
norms and untargeted layers all keep training."""
EXPECT_LOSE = ["inject_lora_hidden", "inject_lora"]
EXPECT_MESSAGE = "not frozen"


def inject_lora(model, target_modules, r, alpha, dropout=0.0, use_rslora=False, init="kaiming"):
    for name in find_target_modules(model, target_modules):
        layer = LoRALinear(model.get_submodule(name), r, alpha, dropout, use_rslora, init)
        model.set_submodule(name, layer)
    return model
