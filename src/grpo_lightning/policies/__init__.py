from grpo_lightning.policies.base import PolicySpec, PreferencePolicy
from grpo_lightning.policies.causal_lm import CausalLM, CausalLMPolicyModule, TinyLlama

__all__ = ["CausalLM", "CausalLMPolicyModule", "PolicySpec", "PreferencePolicy", "TinyLlama"]
