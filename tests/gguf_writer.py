"""Test helper: write a small Hugging Face Llama and its byte-level BPE tokenizer to a GGUF file.

It writes what llama.cpp's ``convert_hf_to_gguf.py`` writes for a Llama with a GPT-2-style tokenizer,
so the tests exercise transformers' real GGUF loader (``from_pretrained(..., gguf_file=...)``) on a
file made in the test, without downloading anything:

* tensors under llama.cpp's names (``token_embd``, ``blk.N.attn_q`` ..., ``output_norm``, ``output``),
  as float32, in the Hugging Face ``(out, in)`` layout (GGUF lists the dimensions reversed);
* the rows of ``attn_q``/``attn_k`` permuted the way llama.cpp does (it pairs the two halves of each
  head's rotary dimensions); transformers' ``LlamaTensorProcessor`` undoes it on load;
* the ``llama.*`` hyper-parameters and the ``tokenizer.ggml.*`` metadata (``model = "gpt2"``, tokens
  in the byte-level alphabet, token types, merges, EOS/PAD ids).

Only what the tests need: Llama architecture, float32, a fast byte-level BPE tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

# Hugging Face parameter name (inside ``model.layers.N.``) -> llama.cpp tensor name (inside ``blk.N.``).
_LAYER_TENSORS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def permute_qk(weight: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute`` (convert_hf_to_gguf.py): within each head, interleave the two
    rotary halves. transformers' ``LlamaTensorProcessor._reverse_permute_weights`` is its inverse."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _tokenizer_metadata(tokenizer) -> tuple[list[str], list[int], list[str]]:
    """(tokens by id, llama.cpp token types, merges as ``"a b"``) of a fast byte-level BPE tokenizer."""
    import gguf

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    if state["model"]["type"] != "BPE":
        raise ValueError(f"only BPE tokenizers are supported, got {state['model']['type']}")
    vocab = tokenizer.get_vocab()
    tokens = [None] * len(vocab)
    for token, index in vocab.items():
        tokens[index] = token
    if any(t is None for t in tokens):
        raise ValueError("the tokenizer's ids are not contiguous")
    special = {t["content"] for t in state.get("added_tokens", []) if t.get("special")}
    types = [int(gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL) for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]
    return tokens, types, merges


def write_llama_gguf(model, tokenizer, path: str | Path, *, name: str = "tiny-llama") -> Path:
    """Write ``model`` (a ``LlamaForCausalLM``) and ``tokenizer`` to ``path`` as an all-F32 GGUF."""
    import gguf

    cfg = model.config
    n_head, n_head_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    rope = getattr(cfg, "rope_parameters", None) or {}
    rope_theta = rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))

    path = Path(path)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope_theta))
    writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))

    tokens, types, merges = _tokenizer_metadata(tokenizer)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    if tokenizer.bos_token_id is not None:
        writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_add_bos_token(False)

    state = {k: v.detach().to(torch.float32).cpu().numpy() for k, v in model.state_dict().items()}
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    tensors = {
        "token_embd.weight": state["model.embed_tokens.weight"],
        "output_norm.weight": state["model.norm.weight"],
    }
    if not tied:
        tensors["output.weight"] = state["lm_head.weight"]
    for i in range(cfg.num_hidden_layers):
        for hf, ggml in _LAYER_TENSORS.items():
            w = state[f"model.layers.{i}.{hf}.weight"]
            if ggml == "attn_q":
                w = permute_qk(w, n_head, n_head)
            elif ggml == "attn_k":
                w = permute_qk(w, n_head, n_head_kv)
            tensors[f"blk.{i}.{ggml}.weight"] = w
    for tensor_name, w in tensors.items():
        writer.add_tensor(tensor_name, np.ascontiguousarray(w, dtype=np.float32))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
