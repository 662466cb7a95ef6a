from grpo_lightning.data.generated import GeneratedOpinions
from grpo_lightning.data.goqa_module import GlobalOpinionQADataModule
from grpo_lightning.data.module import PreferenceDataModule
from grpo_lightning.data.rows import DataError

__all__ = ["DataError", "GeneratedOpinions", "GlobalOpinionQADataModule", "PreferenceDataModule"]
