from grpo_lightning.metrics.group_metrics import GroupOpinionAlignment, GroupPreferenceMetrics
from grpo_lightning.metrics.tags import EVAL_STAGES, eval_tags, opinion_tags, train_tags

__all__ = ["EVAL_STAGES", "GroupOpinionAlignment", "GroupPreferenceMetrics", "eval_tags", "opinion_tags", "train_tags"]
