"""Training: problems in, TRL trainers (SFT, distillation, GRPO) configured from a RunConfig."""
