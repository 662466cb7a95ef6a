"""Regional compilation: ``torch.compile`` of each decoder layer of a Hugging Face causal LM.

In eager mode a CPU step of a small decoder spends about a third of its time outside the matrix
products, in element-wise passes over activation-sized tensors: RMSNorm (six kernels forward, more
backward), rotary embeddings, SiLU·gate, residual adds, and their backward (SmolLM2-135M with LoRA on
GOQA batches: benchmarks/README.md). Compiling fuses each run of them into one loop. Compiling the
layers one by one, not the whole model, is torch's "regional compilation" recipe: the layers share
one code object and their parameters are graph inputs, so one layer's compilation serves all of
them, and the embedding, the LM head and the loss stay eager.

``nn.Module.compile`` compiles in place, so parameter names, ``state_dict``, peft and Lightning
checkpoints are unchanged. Shapes are marked dynamic from the start (``dynamic=True``): a
preference batch's width changes every step, and one dynamic graph avoids a recompilation per
width. What is compiled once per kind of call: the training forward and backward, and the no-grad
reference forward (with LoRA, the adapter disabled is another guard). Inductor needs a C++ compiler
on CPU; values equal eager's to float rounding (the fused loops sum in another order).
"""

from __future__ import annotations

from torch import nn


def compile_decoder_layers(model: nn.Module) -> int:
    """Compile every decoder layer of ``model`` in place; returns how many (see the module docstring)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(
            f"model.policy.compile compiles the decoder's layers, but {type(model).__name__} has no "
            "get_decoder().layers list"
        )
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)
