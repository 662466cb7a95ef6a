"""The LightningModule, its step, checkpoints and schedules."""
