"""Bug: gradients and optimizer states are counted for every parameter, frozen ones included,
so the estimate shows no memory saving for LoRA."""
EXPECT_LOSE = ["estimate_training_memory_hidden", "estimate_training_memory"]
EXPECT_MESSAGE = "frozen parameters"


def estimate_training_memory(n_params, n_trainable, precision="bf16", activation_bytes=0):
    w, g, o = BYTES_PER_PARAM[precision]
    memory = {"weights": n_params * w, "grads": n_params * g, "optimizer": n_params * o,
              "activations": int(activation_bytes)}
    memory["total"] = sum(memory.values())
    return memory
