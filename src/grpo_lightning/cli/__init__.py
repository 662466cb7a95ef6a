"""The ``grpo`` command: LightningCLI, config files, errors, host memory, resume checks."""
