"""TRL trainers from a RunConfig stage: one translator per trainer, no subclassing.

`to_sft_config` / `to_grpo_config` map sparks' documented stage fields onto TRL's configs;
`build_trainer` pairs a config with its dataset, rewards and callbacks. Training on CPU uses
float32 (`bf16=False`, `use_cpu=True`); metrics reach MLflow through sparks' own callback, so
TRL's `report_to` integrations stay off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparks.config import DistillStage, GRPOStage, SFTStage, StageSettings
from sparks.train.data import grpo_dataset, sft_dataset
from sparks.train.rewards import correctness_reward, format_reward


def _common(
    stage: StageSettings, out_dir: Path, seed: int, timeout_minutes: float
) -> dict[str, Any]:
    import torch

    cpu = not torch.cuda.is_available()
    return dict(
        output_dir=str(out_dir),
        max_steps=stage.max_steps,
        save_steps=stage.save_steps,
        save_strategy="steps",
        learning_rate=stage.learning_rate,
        per_device_train_batch_size=stage.batch_size,
        gradient_accumulation_steps=stage.grad_accum,
        logging_steps=1,
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=cpu,
        bf16=not cpu and torch.cuda.is_bf16_supported(),
        save_only_model=False,  # optimizer and RNG state too: a rerun resumes exactly
        disable_tqdm=False,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=min(5, stage.max_steps // 10),
        gradient_checkpointing=stage.gradient_checkpointing,
        # ranks wait in training's collectives while the main process snapshots a save
        ddp_timeout=int(timeout_minutes * 60),
    )


def to_sft_config(
    stage: SFTStage | DistillStage, out_dir: Path, *, seed: int = 0, timeout_minutes: float = 60
):
    """SFTConfig for an `sft` or `distill` stage (loss on the completion only)."""
    from trl import SFTConfig

    return SFTConfig(
        **_common(stage, out_dir, seed, timeout_minutes),
        max_length=stage.max_length,
        completion_only_loss=True,
        dataset_num_proc=None,
    )


def to_grpo_config(stage: GRPOStage, out_dir: Path, *, seed: int = 0, timeout_minutes: float = 60):
    """GRPOConfig for a `grpo` stage (batch sizes count completions, as in TRL)."""
    from trl import GRPOConfig

    vllm: dict[str, Any] = {}
    if stage.use_vllm:  # vLLM inside the trainer process, sharing its GPU (TRL: vLLM 0.22-0.31)
        vllm = dict(
            use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=stage.vllm_memory
        )
    return GRPOConfig(
        **_common(stage, out_dir, seed, timeout_minutes),
        num_generations=stage.num_generations,
        max_completion_length=stage.max_completion_length,
        temperature=stage.temperature,
        beta=stage.beta,
        log_completions=False,
        **vllm,
    )


def stage_progress(method: str):
    """The stage's one progress line: a bar named after the stage, whose postfix carries the latest
    loss and reward, instead of transformers' printing every log dictionary on its own line."""
    from transformers.trainer_callback import ProgressCallback

    class StageProgress(ProgressCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            if self.training_bar is not None:
                self.training_bar.set_description(method)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs:
                shown = {k: f"{logs[k]:.4g}" for k in ("loss", "reward") if k in logs}
                if shown:
                    self.training_bar.set_postfix(shown, refresh=False)

    return StageProgress()


def reward_functions(stage: GRPOStage) -> list:
    return [correctness_reward, format_reward] if stage.format_reward else [correctness_reward]


def build_trainer(
    stage: StageSettings,
    model,
    tokenizer,
    records: list[dict],
    out_dir: Path,
    *,
    seed: int = 0,
    callbacks=(),
    timeout_minutes: float = 60,
):
    """An SFTTrainer or GRPOTrainer for `stage` on `records`, ready to `train()`."""
    from transformers.trainer_callback import ProgressCallback

    trainer: Any
    if isinstance(stage, SFTStage | DistillStage):
        from trl import SFTTrainer

        trainer = SFTTrainer(
            model=model,
            args=to_sft_config(stage, out_dir, seed=seed, timeout_minutes=timeout_minutes),
            train_dataset=sft_dataset(records),
            processing_class=tokenizer,
            callbacks=list(callbacks),
        )
    else:
        from trl import GRPOTrainer

        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward_functions(stage),
            args=to_grpo_config(stage, out_dir, seed=seed, timeout_minutes=timeout_minutes),
            train_dataset=grpo_dataset(records),
            processing_class=tokenizer,
            callbacks=list(callbacks),
        )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(stage_progress(stage.method))
    return trainer
