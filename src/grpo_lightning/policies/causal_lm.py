"""A Hugging Face causal LM as the policy: a tiny model built from a config (the offline
default), any model by hub id or local directory, or a local GGUF file."""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from grpo_lightning.policies.base import PolicySpec, disable_dropout, freeze
from grpo_lightning.policies.causal_lm_module import CausalLMPolicyModule
from grpo_lightning.policies.compile import compile_decoder_layers
from grpo_lightning.policies.lora import LoraSettings, apply_lora
from grpo_lightning.policies.prefix_sharing import prefix_sharing_support

__all__ = ["CausalLM", "CausalLMPolicyModule", "TinyLlama"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TinyLlama:
    """A small Llama built from a config, for the offline default and the tests.

    Attributes:
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size: the architecture.
        max_position_embeddings: longest sequence the model accepts.
        seed: initialisation seed, so the same config gives the same initial weights.
    """

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 128
    max_position_embeddings: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"tiny.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )


def _forget_gguf_origin(model: Any) -> None:
    """Drop transformers' GGUF quantizer marker from a model read from a GGUF file.

    transformers dequantizes every GGUF tensor to ``dtype`` on load, but keeps a ``GgufHfQuantizer`` (and a
    ``quantization_config`` in the config) that is "not serializable", so ``save_pretrained`` of the model, or of
    the merged SFT model (``HFExport``), raised. Nothing quantized remains, so the model is marked a plain one:
    it then saves, and the saved ``config.json`` reloads without the GGUF file.
    """
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model, "quantization_method"):
        model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _four_bit_config(compute_dtype: torch.dtype):
    """NF4 weights with double quantisation (the QLoRA recipe); CUDA and bitsandbytes only."""
    import importlib.util

    if not torch.cuda.is_available():
        raise RuntimeError("model.policy.load_in_4bit needs a CUDA GPU (bitsandbytes 4-bit kernels)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeError("model.policy.load_in_4bit needs the bitsandbytes package: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


class CausalLM(PolicySpec):
    """A causal language model policy.

    Args:
        name_or_path: a hub id or a local directory for ``from_pretrained``; ``None`` builds the
            ``tiny`` architecture from its config (the tokenizer then comes from the data).
        gguf_file: a GGUF file name inside ``name_or_path`` (or a full path to one, or
            ``package://<module>/<file>`` inside an installed package, see
            :mod:`grpo_lightning.policies.package_files`), loaded through transformers' GGUF support (needs ``gguf``).
        tiny: the architecture used when ``name_or_path`` is ``None``.
        revision: hub revision for ``from_pretrained``.
        dtype: parameter dtype (``float32``, ``bfloat16``, ``float16``).
        trust_remote_code: run code shipped with a hub model; off unless set.
        average_log_prob: per-token mean log-prob instead of the sum.
        gradient_checkpointing: recompute activations of the policy (not the reference) in the
            backward pass (non-reentrant).
        prefix_sharing: ``auto`` (default) runs each pair's prompt once for both completions
            where the model supports it (Llama-family decoders with sdpa or eager attention) and
            the concatenated forward otherwise; ``on`` requires it; ``off`` never uses it. The
            path taken is logged.
        padding_free: with the prefix-shared forward, each pair is one unpadded segment (prompt,
            chosen, rejected) and short segments share a row (first-fit decreasing), so a batch
            of uneven prompt lengths runs fewer padding tokens (TRL's ``padding_free``); only the
            positions that predict a completion token go through the LM head. Same values up to
            float rounding. An error with ``prefix_sharing: off``; unused (logged) where ``auto``
            finds prefix sharing unsupported.
        compile: ``torch.compile`` each decoder layer in place (regional compilation,
            :mod:`grpo_lightning.policies.compile`): fuses the element-wise work between the matrix
            products; the first batches of each kind (training, reference) pay the compilation, and
            it needs a C++ compiler on CPU. Off by default.
        lora: LoRA adapter settings (peft); ``None`` trains all weights. With LoRA the reference
            is the base model with the adapter disabled (no second copy in memory).
        load_in_4bit: load the base weights 4-bit (NF4, bitsandbytes) for QLoRA-style training on
            CUDA; needs ``lora`` and the ``bitsandbytes`` package.
        adapter: a saved peft LoRA adapter directory (the SFT stage's ``hf_adapter``) to *keep training*, as the
            authors' code does (rsshyam/GRPO loads the SFT archive, LoRA weights included, into policy and
            reference). The policy is the base model plus this adapter, trainable; the reference is a frozen copy of
            base + adapter merged (the SFT model), not the base model. ``lora`` is then not used (the adapter's
            own config is). Default ``None``: a fresh adapter from ``lora`` on a (merged) SFT export.
    """

    def __init__(
        self,
        name_or_path: str | None = None,
        gguf_file: str | None = None,
        tiny: TinyLlama | dict | None = None,
        revision: str | None = None,
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        trust_remote_code: bool = False,
        average_log_prob: bool = False,
        gradient_checkpointing: bool = False,
        prefix_sharing: Literal["auto", "on", "off"] | bool = "auto",
        lora: LoraSettings | dict | None = None,
        load_in_4bit: bool = False,
        adapter: str | None = None,
        padding_free: bool = False,
        compile: bool = False,
    ) -> None:
        if load_in_4bit and lora is None and adapter is None:
            raise ValueError("model.policy.load_in_4bit trains through LoRA adapters: set model.policy.lora too")
        if isinstance(prefix_sharing, bool):
            prefix_sharing = "on" if prefix_sharing else "off"
        if prefix_sharing not in ("auto", "on", "off"):
            raise ValueError(f"model.policy.prefix_sharing must be auto, on or off, got {prefix_sharing!r}")
        if padding_free and prefix_sharing == "off":
            raise ValueError(
                "model.policy.padding_free packs the rows of the prefix-shared forward: "
                "it needs model.policy.prefix_sharing auto or on, not off"
            )
        lora = LoraSettings(**lora) if isinstance(lora, dict) else lora
        tiny = TinyLlama(**tiny) if isinstance(tiny, dict) else (tiny or TinyLlama())
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"model.policy.dtype must be float32, bfloat16 or float16, got {dtype!r}")
        super().__init__(
            name_or_path=name_or_path,
            gguf_file=gguf_file,
            tiny=asdict(tiny),
            revision=revision,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            average_log_prob=average_log_prob,
            gradient_checkpointing=gradient_checkpointing,
            prefix_sharing=prefix_sharing,
            lora=None if lora is None else {**asdict(lora), "target_modules": list(lora.target_modules)},
            load_in_4bit=load_in_4bit,
            adapter=adapter,
            padding_free=padding_free,
            compile=compile,
        )
        self.lora = lora
        self.adapter = adapter
        self.name_or_path, self.gguf_file, self.tiny = name_or_path, gguf_file, tiny
        self.dtype = getattr(torch, dtype)

    def load_model(self, tokenizer: Any | None) -> nn.Module:
        from transformers import AutoModelForCausalLM, LlamaConfig

        if self.name_or_path is None and self.gguf_file is None:
            if tokenizer is None:
                raise ValueError("the tiny model needs the data's tokenizer (for its vocabulary size)")
            cfg = LlamaConfig(
                vocab_size=len(tokenizer),
                hidden_size=self.tiny.hidden_size,
                num_hidden_layers=self.tiny.num_hidden_layers,
                num_attention_heads=self.tiny.num_attention_heads,
                num_key_value_heads=self.tiny.num_attention_heads,
                intermediate_size=self.tiny.intermediate_size,
                max_position_embeddings=self.tiny.max_position_embeddings,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                bos_token_id=None,
                tie_word_embeddings=True,
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.tiny.seed)
                model = AutoModelForCausalLM.from_config(cfg, dtype=self.dtype)
            return model
        from grpo_lightning.policies.package_files import resolve

        source, gguf = self.name_or_path, resolve(self.gguf_file)
        if gguf is not None and source is None:
            from pathlib import Path

            source, gguf = str(Path(gguf).parent), Path(gguf).name
        log.info("loading policy from %s%s", source, f" (GGUF {gguf})" if gguf else "")
        kwargs: dict[str, Any] = {"revision": self.init_args["revision"], "dtype": self.dtype}
        if gguf is not None:
            kwargs["gguf_file"] = gguf
        if self.init_args["trust_remote_code"]:
            kwargs["trust_remote_code"] = True
        if self.init_args.get("load_in_4bit"):
            kwargs["quantization_config"] = _four_bit_config(self.dtype)
        try:
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except OSError as err:
            raise OSError(
                f"could not load model.policy.name_or_path={source!r}: {err}\n"
                "Offline (HF_HUB_OFFLINE=1) only local directories and files already in the cache work."
            ) from err
        if gguf is not None:
            _forget_gguf_origin(model)
        return model

    def build(self, tokenizer: Any | None) -> CausalLMPolicyModule:
        model = self.load_model(tokenizer)
        if tokenizer is not None and model.get_input_embeddings().num_embeddings < len(tokenizer):
            raise ValueError(
                f"the tokenizer has {len(tokenizer)} tokens but the model's embedding only "
                f"{model.get_input_embeddings().num_embeddings}: use the model's own tokenizer"
            )
        disable_dropout(model)
        sharing = self._prefix_sharing(model)
        gc = self.init_args["gradient_checkpointing"]
        if self.adapter is not None:
            return self._continue_adapter(model, sharing, gc)
        if self.lora is not None:
            model = apply_lora(model, self.lora, gradient_checkpointing=gc)
            n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
            log.info(
                "LoRA r=%d on %s: %d trainable parameters; reference = base model with the adapter disabled",
                self.lora.r,
                list(self.lora.target_modules),
                n_train,
            )
            return self._module(model, None, sharing, adapter_reference=True)
        reference = freeze(copy.deepcopy(model))
        if gc:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return self._module(model, reference, sharing)

    def _continue_adapter(self, model: nn.Module, sharing: bool, gc: bool) -> CausalLMPolicyModule:
        """Policy = base + the saved adapter (trainable); reference = a frozen merged copy (the SFT model)."""
        from peft import PeftModel

        if self.lora is not None:
            log.info("model.policy.adapter is set: its saved LoRA config is used, model.policy.lora is not")
        reference = freeze(PeftModel.from_pretrained(copy.deepcopy(model), self.adapter).merge_and_unload())
        if gc:
            model.enable_input_require_grads()
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model = PeftModel.from_pretrained(model, self.adapter, is_trainable=True)
        disable_dropout(model)
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log.info(
            "continuing the LoRA adapter %s: %d trainable parameters; reference = base + adapter", self.adapter, n_train
        )
        return self._module(model, reference, sharing)

    def _module(
        self, model: nn.Module, reference: nn.Module | None, sharing: bool, *, adapter_reference: bool = False
    ) -> CausalLMPolicyModule:
        """The policy module with this spec's forward settings; with ``compile``, its decoder layers compiled."""
        if self.init_args["compile"]:
            n = sum(compile_decoder_layers(m) for m in (model, reference) if m is not None)
            log.info("torch.compile: %d decoder layers compiled in place (regional compilation)", n)
        return CausalLMPolicyModule(
            model,
            reference,
            average_log_prob=self.init_args["average_log_prob"],
            prefix_sharing=sharing,
            adapter_reference=adapter_reference,
            padding_free=self._padding_free(sharing),
        )

    def _prefix_sharing(self, model: nn.Module) -> bool:
        setting = self.init_args["prefix_sharing"]
        supported, why = prefix_sharing_support(model)
        if setting == "on" and not supported:
            raise ValueError(f"model.policy.prefix_sharing=on but {why}; use auto or off")
        use = setting == "on" or (setting == "auto" and supported)
        if use:
            log.info("prefix-shared forward: each prompt is run once for both completions (%s)", why)
        elif setting == "off":
            log.info("concatenated forward (model.policy.prefix_sharing=off)")
        else:
            log.info("concatenated forward: prefix sharing unsupported, %s", why)
        return use

    def _padding_free(self, sharing: bool) -> bool:
        if not self.init_args["padding_free"]:
            return False
        if sharing:
            log.info("padding-free rows: each pair one unpadded segment, segments sharing rows")
        else:
            log.info("model.policy.padding_free unused: it packs the prefix-shared forward, which is off here")
        return sharing
