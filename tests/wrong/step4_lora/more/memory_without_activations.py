"""Bug: the total leaves out the activations (the term that LoRA does not shrink)."""
EXPECT_LOSE = ["estimate_training_memory_hidden", "estimate_training_memory"]


def estimate_training_memory(n_params, n_trainable, precision="bf16", activation_bytes=0):
    w, g, o = BYTES_PER_PARAM[precision]
    memory = {"weights": n_params * w, "grads": n_trainable * g, "optimizer": n_trainable * o,
              "activations": int(activation_bytes)}
    memory["total"] = memory["weights"] + memory["grads"] + memory["optimizer"]
    return memory
