from grpo_lightning.policies.base import PolicySpec, PreferencePolicy
from grpo_lightning.policies.causal_lm import CausalLM, CausalLMPolicyModule, TinyLlama
from grpo_lightning.policies.lora import LoraSettings

__all__ = ["CausalLM", "CausalLMPolicyModule", "LoraSettings", "PolicySpec", "PreferencePolicy", "TinyLlama"]
