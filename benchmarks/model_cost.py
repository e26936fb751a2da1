"""Measure the Stage 3 model: trainable parameter counts and CPU/GPU cost per step.

Run from the repository root::

    python benchmarks/model_cost.py counts --sizes tiny small base large
    python benchmarks/model_cost.py cost --sizes tiny base --pixels 224

``counts`` builds each size with random weights (offline) and prints the exact
trainable / total parameters for several LoRA ranks (the LoRA part is linear in
the rank, so one build per size gives every rank). ``cost`` times one training
step (forward + backward + AdamW) and one generation, in fp32 and under bf16
autocast, and prints a Markdown table. Timings are medians over ``--repeats``
runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from axion.config import ModelConfig
from axion.model import Stage3Model, build_stage3_model
from axion.model.lora import lora_layers


def _lora_params_per_rank(model: Stage3Model) -> int:
    total = 0
    for layer in lora_layers(model.generator).values():
        base = layer.base_layer
        if isinstance(base, torch.nn.Linear):
            total += base.in_features + base.out_features
        else:
            total += base.in_channels * base.kernel_size[0] + base.out_channels
    return total


def counts(sizes: list[str], ranks: list[int]) -> None:
    """Print trainable / total parameters per size and rank."""
    print("| size | rank | LoRA | fusion | trainable | total | % |")
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        model = build_stage3_model(ModelConfig(model_size=size, pretrained=False, lora_rank=8))
        trainable8, total8 = model.parameter_counts()
        per_rank = _lora_params_per_rank(model)
        head = sum(p.numel() for p in model.fusion.parameters())
        assert trainable8 == 8 * per_rank + head, "count does not follow from the layer sizes"
        frozen = total8 - trainable8
        for rank in ranks:
            lora = rank * per_rank
            trainable, total = lora + head, frozen + lora + head
            print(
                f"| {size} | {rank} | {lora:,} | {head:,} | {trainable:,} | {total:,} | {100 * trainable / total:.3f} |"
            )
        del model


def _median_time(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _time_size(size: str, pixels: int, train_steps: int, gen_steps: int, repeats: int, device: str) -> None:
    model = build_stage3_model(ModelConfig(model_size=size, pretrained=False, timesteps=train_steps)).to(
        device
    )
    s1 = torch.randn(1, 2, pixels, pixels, device=device) - 15.0
    opt_v2 = torch.rand(1, 4, pixels, pixels, device=device) * 3000.0
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for precision in ("fp32", "bf16"):
        autocast = torch.autocast(
            torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16"
        )

        def train_step(autocast: torch.autocast = autocast) -> None:
            model.train()
            optimizer.zero_grad()
            with autocast:
                out = model(s1, opt_v2, timesteps=train_steps)
            (out - opt_v2).abs().mean().backward()
            optimizer.step()
            model.train(False)

        def generation(autocast: torch.autocast = autocast) -> None:
            with autocast:
                model.generate(s1, opt_v2, seeds=[0], timesteps=gen_steps)

        step_s = _median_time(train_step, repeats)
        gen_s = _median_time(generation, repeats)
        print(f"| {size} | {precision} | {step_s:.2f} s | {gen_s:.2f} s |", flush=True)


def cost(sizes: list[str], pixels: int, train_steps: int, gen_steps: int, repeats: int, device: str) -> None:
    """Print seconds per training step and per generation, fp32 and bf16 autocast."""
    print(f"| size | precision | train step (T={train_steps}) | generation (T={gen_steps}) |")
    print("|---|---|---|---|")
    for size in sizes:
        _time_size(size, pixels, train_steps, gen_steps, repeats, device)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    p_counts = sub.add_parser("counts", help="trainable parameter counts per size and rank")
    p_counts.add_argument("--sizes", nargs="+", default=["tiny", "small", "base", "large"])
    p_counts.add_argument("--ranks", nargs="+", type=int, default=[4, 8, 16])
    p_cost = sub.add_parser("cost", help="seconds per training step and per generation")
    p_cost.add_argument("--sizes", nargs="+", default=["tiny", "base"])
    p_cost.add_argument("--pixels", type=int, default=224)
    p_cost.add_argument("--train-timesteps", type=int, default=1)
    p_cost.add_argument("--gen-timesteps", type=int, default=10)
    p_cost.add_argument("--repeats", type=int, default=2)
    p_cost.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {getattr(args, 'device', 'cpu')}"
    )
    if args.what == "counts":
        counts(args.sizes, args.ranks)
    else:
        cost(args.sizes, args.pixels, args.train_timesteps, args.gen_timesteps, args.repeats, args.device)


if __name__ == "__main__":
    main()
