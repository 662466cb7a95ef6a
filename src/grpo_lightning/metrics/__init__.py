from grpo_lightning.metrics.group_metrics import GroupPreferenceMetrics
from grpo_lightning.metrics.tags import EVAL_STAGES, eval_tags, train_tags

__all__ = ["EVAL_STAGES", "GroupPreferenceMetrics", "eval_tags", "train_tags"]
