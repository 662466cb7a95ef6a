from grpo_lightning.data.io import DataError
from grpo_lightning.data.module import PreferenceDataModule
from grpo_lightning.data.sources.generated import GeneratedOpinions
from grpo_lightning.data.sources.goqa_module import GlobalOpinionQADataModule

__all__ = ["DataError", "GeneratedOpinions", "GlobalOpinionQADataModule", "PreferenceDataModule"]
