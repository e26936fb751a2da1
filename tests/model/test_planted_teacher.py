"""Adapters that provably learn: a student recovers a LoRA delta planted in a teacher.

No pretrained weights are reachable here, so the base is made to behave like a trained
generator (:func:`make_trained_like`: a UNet without zero layers, confident position-dependent
token logits, a denoiser that takes its content from the token codes rather than the noise).
A teacher is the same base with a known random LoRA delta in one adapter group; the student
starts from peft's initialisation (B = 0, so it equals the base) and trains that group alone on
the teacher's generated bands, through the project's training path: ``Stage3Model.outputs``
(encoder-decoder logits, argmax tokens with the straight-through estimator, ``DDIMUnroll``
with ``grad_steps``), an L1 loss, and the calls ``Stage3Trainer.train_epoch`` makes each step
(backward, gradient clipping at ``max_grad_norm``, AdamW from ``build_optimization`` with its
warm-up + cosine schedule, scheduler step). Every step draws new noise; the gap is measured
on held-out noise seeds, in the precision the student trained in (the teacher's targets too).

Budgets and learning rates come from measurements (tiny, 4 tiles of 32 px, gap on the
held-out seeds; 2-core CPU shared with other jobs, load average 6-11; closed fraction after
every 4 steps):

- decoder cross-attention, lr 1e-3, 16 steps: fp32 32 %, -1 %, 100 %, 100 %; bf16 65 %, 54 %,
  100 %, 100 %. Its gap moves in whole-token jumps (2 of 16 tokens differ at the start) and can
  jump back late in a run (12 steps: 57 % in one run, 100 % in another; 20 steps ended at 39 %),
  hence the assertion on the best measured point. lr 2e-3 overshoots (-103 %).
- UNet attention, lr 6e-3, 24 steps: fp32 ... 55 %; bf16 ... 54 %; T = 2 with ``grad_steps`` 1
  ... 59 %. lr 3e-3, 16 steps: 48 %. Without the weak noise channels (``noise_scale`` 1) the
  held-out gap barely moves (9 % after 20 steps at lr 3e-3, 2 tiles): what a student learns on
  some noise does not carry to other noise when the denoiser draws its output from the noise.

Each case first checks that the teacher differs from the start by ``min_gap``, so a planted
delta too small to matter cannot pass as learnt; a learning rate too high (measured above) or
too low fails the closed-fraction assertion.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
import torch

from axion.config import ModelConfig, TrainingConfig
from axion.model import build_stage3_model
from axion.runtime.device import cpu_has_native_bf16
from axion.training.fit import build_optimization

from .conftest import adapter_params, denoiser, loaded, make_trained_like, planted_delta, zero_weights

#: The batch: the top-left and bottom-right 32 px quadrants of the two real 64 px crops,
#: 4 tiles of 2 x 2 tokens (16 tokens). The UNet needs an even token grid (48 px fails).
BATCH = 4
#: The denoiser's first convolution reads the noise channels this much (see make_trained_like).
NOISE_SCALE = 0.1
TEACHER_SEED = 1234
#: Planted delta: std of the random A and B of each group.
TEACHER = {"decoder": (0.05, 0.006), "unet": (0.05, 0.1)}
#: The held-out gap is measured after every this many steps (and after the last).
EVAL_EVERY = 4
#: Held-out noise seeds for the gap; training draws new ones each step (0, 1, 2, ...).
EVAL_SEEDS = ([1000, 1001, 1002, 1003], [2000, 2001, 2002, 2003])


@dataclass(frozen=True)
class Case:
    group: str
    precision: str
    lr: float
    steps: int
    #: The teacher must differ from the student at the start by at least this mean absolute
    #: difference of the generated bands (tile units, reflectance x 10000), on the held-out seeds.
    min_gap: float
    timesteps: int = 1
    grad_steps: int = 1


class Lab:
    """A trained-like tiny model, its peft start, and teachers with planted deltas."""

    def __init__(self, s1: torch.Tensor, opt_v2: torch.Tensor) -> None:
        cfg = ModelConfig(model_size="tiny", pretrained=False, timesteps=1, lora_rank=8, lora_alpha=16)
        self.model = build_stage3_model(cfg)
        self.s1, self.opt_v2 = s1, opt_v2
        make_trained_like(self.model, zero_weights(denoiser(self.model)), s1, opt_v2, noise_scale=NOISE_SCALE)
        self.start = self.model.trainable_state_dict()

    def generated(self, seeds: list[int], case: Case) -> torch.Tensor:
        """The generated B2, B3, B4, B8 (tile units), as training computes them."""
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if case.precision == "bf16"
            else contextlib.nullcontext()
        )
        with autocast:
            return self.model.outputs(self.s1, self.opt_v2, seeds=seeds, timesteps=case.timesteps)[1]

    def train(self, case: Case) -> tuple[float, list[float]]:
        """Train the student's ``case.group`` adapters from the peft start.

        Returns:
            The gap before training, and the gap after every :data:`EVAL_EVERY` steps (and the last).
        """
        model = self.model
        teacher = planted_delta(model, case.group, TEACHER_SEED, *TEACHER[case.group])
        train_seeds = [list(range(BATCH * i, BATCH * (i + 1))) for i in range(case.steps)]
        with torch.no_grad(), loaded(model, teacher):
            targets = {tuple(s): self.generated(s, case) for s in train_seeds + list(EVAL_SEEDS)}

        def gap() -> float:
            with torch.no_grad():
                diffs = [(self.generated(s, case) - targets[tuple(s)]).abs().mean() for s in EVAL_SEEDS]
            return float(torch.stack(diffs).mean())

        params = adapter_params(model, case.group)
        model.arm.grad_steps = case.grad_steps
        for name, p in model.named_parameters():
            p.requires_grad = name in params
        training = TrainingConfig(lr=case.lr, warmup_steps=0, epochs=1)
        optimization = build_optimization(model, training, case.steps)
        try:
            before, after = gap(), []
            for step, seeds in enumerate(train_seeds, start=1):
                loss = (self.generated(seeds, case) - targets[tuple(seeds)]).abs().mean()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(list(params.values()), training.max_grad_norm)
                optimization.optimizer.step()
                optimization.optimizer.zero_grad(set_to_none=True)
                optimization.scheduler.step()
                if step % EVAL_EVERY == 0 or step == case.steps:
                    after.append(gap())
            return before, after
        finally:
            for name, p in model.named_parameters():
                p.requires_grad = name in self.start
                p.grad = None
            model.load_trainable_state_dict(self.start)
            model.arm.grad_steps = model.cfg.grad_steps


@pytest.fixture(scope="module")
def lab(real_batch) -> Lab:
    def quadrants(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[..., :32, :32], x[..., 32:, 32:]]).contiguous()

    s1, opt_v2 = real_batch
    return Lab(quadrants(s1), quadrants(opt_v2))


CASES = {
    "decoder-fp32": Case("decoder", "fp32", lr=1e-3, steps=16, min_gap=100.0),
    "unet-fp32": Case("unet", "fp32", lr=6e-3, steps=24, min_gap=30.0),
    "decoder-bf16": Case("decoder", "bf16", lr=1e-3, steps=16, min_gap=100.0),
    "unet-bf16": Case("unet", "bf16", lr=6e-3, steps=24, min_gap=30.0),
    "unet-T2-K1": Case("unet", "fp32", lr=6e-3, steps=24, min_gap=30.0, timesteps=2, grad_steps=1),
}
SLOW = {"decoder-bf16", "unet-bf16", "unet-T2-K1"}
#: On a CPU without native bf16, autocast emulates it about 100x slower than fp32 (and
#: ``--precision auto`` trains fp32 there): a bf16 case would take many minutes of the suite.
EMULATED_BF16 = pytest.mark.skipif(
    not cpu_has_native_bf16(),
    reason="this CPU has no native bf16 (AVX512-BF16 or AMX): emulated, ~100x slower",
)


def _marks(name: str) -> list[pytest.MarkDecorator]:
    marks = [pytest.mark.slow] if name in SLOW else []
    return marks + ([EMULATED_BF16] if CASES[name].precision == "bf16" else [])


@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n)) for n in CASES])
def test_student_closes_half_the_gap_to_a_planted_teacher(lab, name):
    case = CASES[name]
    before, after = lab.train(case)
    assert before >= case.min_gap, f"the teacher barely differs from the start: {before:.1f} < {case.min_gap}"
    closed = [1 - gap / before for gap in after]
    print(f"{name}: gap {before:.1f} -> " + ", ".join(f"{c:.0%}" for c in closed) + " closed")
    # Within the budget the student gets at least half-way. The decoder's progress is a sequence
    # of token flips (2 of 16 tokens differ at the start), so its gap moves in jumps and can
    # jump back late in a run; the best point within the budget is what a monitor would keep.
    assert max(closed) >= 0.5, f"{name}: closed at most {max(closed):.0%} of the gap ({before:.1f})"
