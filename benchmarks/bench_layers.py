"""Speed of the fast bilinear layer and of full training steps (FiBiNET,
FiBiNet++, DeepFM).

Everything is timed side by side in this one process, interleaved round by
round, and reported as medians and ratios, so a busy machine slows both sides
of a ratio alike. Prints a markdown report; `make bench` saves it to
benchmarks/RESULTS.md.

    python benchmarks/bench_layers.py                      # CPU, 2 threads
    python benchmarks/bench_layers.py --device cuda --rounds 5

On CUDA the CPU-only parts (glibc's allocator, the `fast.blocks` rows, which
fall back to PyTorch's own ops there) are skipped, and the device is
synchronised around every timed call.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date

import torch
from torch import nn

from fibinet_tutorial import train
from fibinet_tutorial.criteo import CRITEO_CARDINALITIES
from fibinet_tutorial.fast import (
    Dropout,
    Linear,
    has_amx,
    keep_freed_memory,
    lookup,
    make_adam,
)
from fibinet_tutorial.layers import BilinearInteraction, BilinearInteractionLoop
from fibinet_tutorial.metrics import BCEWithLogits
from fibinet_tutorial.models import (
    DeepFM,
    FiBiNET,
    FiBiNETPlusPlus,
    count_non_embedding_parameters,
)

BATCH, N_NUM, N_CAT, D_EMBED = 2048, 13, 26, 8
NUM_FIELDS = N_NUM + N_CAT
TYPES = ("field_all", "field_each", "field_interaction")
DEVICE = torch.device("cpu")  # main() sets it from --device


def synchronize():
    """Wait for the device to finish: CUDA runs asynchronously."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


class Timings(dict):
    """Median milliseconds per function, plus per-round ratios."""

    def __init__(self, times: dict):
        super().__init__({name: statistics.median(ts) for name, ts in times.items()})
        self.times = times

    def ratios(self, slow: str, fast: str) -> list[float]:
        """slow / fast in each round, both timed in the same round: a busy
        spell on a shared machine slows both sides of each ratio alike."""
        return [a / b for a, b in zip(self.times[slow], self.times[fast])]

    def ratio(self, slow: str, fast: str) -> float:
        """Median over rounds of slow / fast."""
        return statistics.median(self.ratios(slow, fast))

    def spread(self, slow: str, fast: str, digits: int = 2) -> str:
        """'median (q1–q3)' of the per-round ratios: the interquartile range
        tells a real difference from the machine's noise."""
        r = self.ratios(slow, fast)
        q1, _, q3 = statistics.quantiles(r, n=4) if len(r) > 1 else (r[0],) * 3
        med = statistics.median(r)
        return f"{med:.{digits}f}x ({q1:.{digits}f}–{q3:.{digits}f})"


def interleaved_medians(fns: dict, rounds: int) -> Timings:
    """Time each function round-robin, `rounds` times after a warm-up call."""
    for fn in fns.values():  # warm-up: allocations, lazy init
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            synchronize()
            start = time.perf_counter()
            fn()
            synchronize()
            times[name].append(1000 * (time.perf_counter() - start))
    return Timings(times)


class FuxiCTRStyleBilinear(nn.Module):
    """FuxiCTR v2's approach (triu_indices + index_select), for context only."""

    def __init__(self, layer: BilinearInteraction):
        super().__init__()
        self.layer = layer
        i, j = torch.triu_indices(layer.num_fields, layer.num_fields, offset=1)
        self.register_buffer("i", i)
        self.register_buffer("j", j)

    def forward(self, x):
        w = self.layer.weight
        if self.layer.bilinear_type == "field_all":
            vi = x.index_select(1, self.i) @ w[0]
        elif self.layer.bilinear_type == "field_each":
            u = torch.einsum("bfc,fck->bfk", x, w)
            vi = u.index_select(1, self.i)
        else:
            vi = torch.einsum("bpc,pck->bpk", x.index_select(1, self.i), w)
        return vi * x.index_select(1, self.j)


def forward_backward(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    """One closure: the layer's forward and backward with a given gradient."""
    return lambda: layer(x).backward(grad)


def bench_bilinear(rounds: int) -> list[str]:
    rows = [
        "| bilinear_type | loop (ms) | fast (ms) | **loop / fast** | fast, row-major "
        "grad (ms) | FuxiCTR-style (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for bilinear_type in TYPES:
        torch.manual_seed(0)
        fast = BilinearInteraction(NUM_FIELDS, D_EMBED, bilinear_type).to(DEVICE)
        loop = BilinearInteractionLoop(NUM_FIELDS, D_EMBED, bilinear_type)
        loop.weight = fast.weight
        fuxi = FuxiCTRStyleBilinear(fast).to(DEVICE)
        x = torch.randn(BATCH, NUM_FIELDS, D_EMBED, device=DEVICE, requires_grad=True)
        with torch.no_grad():
            out_fast = fast(x)
        # A gradient arrives in the layout of the tensor it belongs to (nn.Linear,
        # elementwise ops and flatten all keep it); randn_like does the same.
        grad_fast = torch.randn_like(out_fast)
        grad_rows = torch.randn(out_fast.shape, device=DEVICE)  # row-major
        ms = interleaved_medians(
            {
                "loop": forward_backward(loop, x, grad_rows),
                "fast": forward_backward(fast, x, grad_fast),
                "fast_rows": forward_backward(fast, x, grad_rows),
                "fuxi": forward_backward(fuxi, x, grad_rows),
            },
            rounds,
        )
        rows.append(
            f"| {bilinear_type} | {ms['loop']:.1f} | {ms['fast']:.1f} | "
            f"**{ms.spread('loop', 'fast', 1)}** | {ms['fast_rows']:.1f} | "
            f"{ms['fuxi']:.1f} |"
        )
    return rows


def train_step(net: nn.Module, x, y, precision: str = "float32"):
    """One closure doing what `train.CTRKerasModel` does each training step:
    forward (under autocast for bf16), the trainer's loss (BCE on logits),
    backward, gradients clipped to norm 1.0 (torchkeras's StepRunner does it
    every step), the trainer's Adam (`fast.make_adam`, fused where it can be)
    with its weight-decay groups (`train.decay_groups`, the defaults' decays),
    and zeroed gradients. Left out: torchkeras's per-step bookkeeping (the
    loss and metrics copied to Python)."""
    hp = train.default_hparams()
    mlp_decay = train.auto_mlp_weight_decay(200_000)  # the built-in data's
    groups = train.decay_groups(net, hp["weight_decay"], mlp_decay)
    optimizer = make_adam(groups, lr=hp["lr"])
    loss_fn = BCEWithLogits()

    def step():
        with train.autocast_training(net, precision):
            loss = loss_fn(net(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    return step


def criteo_batch(seed: int = 0):
    """A batch at Criteo's sizes: (x_num, x_cat), y on DEVICE."""
    torch.manual_seed(seed)
    x = (
        torch.randn(BATCH, N_NUM),
        torch.stack([torch.randint(0, c, (BATCH,)) for c in CRITEO_CARDINALITIES], 1),
    )
    y = torch.randint(0, 2, (BATCH,)).float()
    return tuple(t.to(DEVICE) for t in x), y.to(DEVICE)


def bench_train_step(rounds: int) -> list[str]:
    cats = list(CRITEO_CARDINALITIES)
    x, y = criteo_batch()
    seed_config = dict(
        d_embed=D_EMBED,
        mlp_layers=(128, 64, 32),
        mlp_dropout=0.25,
        bilinear_type="field_all",
        shared_bilinear=True,
    )
    fast = FiBiNET(N_NUM, cats, fast=True, **seed_config).to(DEVICE)
    fast_bf16 = FiBiNET(N_NUM, cats, fast=True, **seed_config).to(DEVICE)
    loop = FiBiNET(N_NUM, cats, fast=False, **seed_config).to(DEVICE)
    deepfm = DeepFM(N_NUM, cats, D_EMBED, (128, 64, 32), 0.25).to(DEVICE)
    d_in = NUM_FIELDS * (NUM_FIELDS - 1) * D_EMBED
    first_layer = nn.Linear(d_in, 128).to(DEVICE)
    x_first = torch.randn(BATCH, d_in, device=DEVICE, requires_grad=True)
    ms = interleaved_medians(
        {
            "fast": train_step(fast, x, y),
            "bf16": train_step(fast_bf16, x, y, "bf16"),
            "loop": train_step(loop, x, y),
            "deepfm": train_step(deepfm, x, y),
            "floor": lambda: first_layer(x_first).sum().backward(),
        },
        rounds,
    )
    if DEVICE.type == "cuda":
        amx = torch.cuda.get_device_name()
    else:
        amx = "this CPU has AMX" if has_amx() else "no AMX here: emulated"
    return [
        "| step (forward + backward + clip + Adam) | ms | vs fast FiBiNET (float32) |",
        "|---|---:|---:|",
        f"| FiBiNET, fast bilinear | {ms['fast']:.0f} | 1.00x |",
        f"| FiBiNET, fast bilinear, bf16 autocast ({amx}) | {ms['bf16']:.0f} | "
        f"{ms.spread('fast', 'bf16')} faster |",
        f"| FiBiNET, loop bilinear | {ms['loop']:.0f} | "
        f"**{ms.spread('loop', 'fast')} slower** |",
        f"| DeepFM | {ms['deepfm']:.0f} | {ms.spread('fast', 'deepfm')} faster |",
        f"| first MLP layer alone ({d_in:,} -> 128, fwd + bwd) | {ms['floor']:.0f} | "
        f"{ms.spread('fast', 'floor')} less time |",
    ]


class RowLayoutFiBiNETPlusPlus(FiBiNETPlusPlus):
    """FiBiNet++ with its norms and SENet+ run as the layers read, on
    [B, F, d], without `fast.columns` (Bilinear+ batched, as in the model)."""

    def forward(self, x):
        x_num, x_cat = self.check_inputs(x)
        return self.mlp(self.deep_input(self.embed(x_num, x_cat))).squeeze(-1)


STEP_SIZES = {  # column title -> (d_embed, MLP): ours, then the authors' "++" run
    "d=8, MLP 128-64-32": (8, (128, 64, 32)),
    "d=10, MLP 400-400-400 (the authors')": (10, (400, 400, 400)),
}


def bench_fibinetpp_step(rounds: int) -> list[str]:
    """FiBiNet++ vs FiBiNET vs DeepFM: float32 training steps side by side."""
    cats = list(CRITEO_CARDINALITIES)
    x, y = criteo_batch()
    hp = train.default_hparams()
    shared = {"mlp_dropout": hp["mlp_dropout"]}
    fib = {k: hp[k] for k in ("reduction_ratio", "bilinear_type", "shared_bilinear")}
    columns, params, verdicts = {}, {}, []
    for title, (d, mlp) in STEP_SIZES.items():
        torch.manual_seed(0)
        nets = {
            "deepfm": DeepFM(N_NUM, cats, d, mlp, **shared),
            "fibinetpp": FiBiNETPlusPlus(N_NUM, cats, d, mlp, **shared),
            "fibinet": FiBiNET(N_NUM, cats, d, mlp, **shared, **fib),
        }
        if d == D_EMBED:  # what fast.columns buys
            nets["rows"] = RowLayoutFiBiNETPlusPlus(N_NUM, cats, d, mlp, **shared)
        fns = {k: train_step(net.to(DEVICE), x, y) for k, net in nets.items()}
        columns[title] = interleaved_medians(fns, rounds)
        params[title] = [
            count_non_embedding_parameters(nets[k]) for k in ("fibinet", "fibinetpp")
        ]
        del nets, fns
        ratio = columns[title].ratio("fibinetpp", "deepfm")
        verdicts.append(
            f"{title}: FiBiNet++ / DeepFM = {ratio:.2f}x (bar <= 2x: "
            f"{'met' if ratio <= 2 else 'missed'}; goal <= 1.3x: "
            f"{'met' if ratio <= 1.3 else 'missed'})"
        )
    titles = list(STEP_SIZES)
    rows = [
        "| float32 step (forward + backward + clip + Adam) | "
        + " | ".join(f"{t}: ms | / DeepFM" for t in titles)
        + " |",
        "|---|" + "---:|---:|" * len(titles),
    ]
    for key, name in (
        ("deepfm", "DeepFM"),
        ("fibinetpp", "**FiBiNet++**"),
        ("rows", "FiBiNet++ without `fast.columns` (norms, SENet+ on [B, F, d])"),
        ("fibinet", "FiBiNET"),
    ):
        cells = []
        for t in titles:
            ms = columns[t]
            if key not in ms:
                cells.append("| ")
                continue
            ratio = "1.00x" if key == "deepfm" else ms.spread(key, "deepfm")
            cells.append(f"{ms[key]:.0f} | {ratio}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = [
        f"{a:,} / {b:,} | **{a / b:.1f}x**" for a, b in (params[t] for t in titles)
    ]
    rows.append(
        "| non-embedding parameters, FiBiNET / FiBiNet++ | " + " | ".join(cells) + " |"
    )
    speedup = [columns[t].spread("fibinet", "fibinetpp") for t in titles]
    rows += [
        "",
        "FiBiNET / FiBiNet++ step time: "
        + "; ".join(f"{t}: {s}" for t, s in zip(titles, speedup))
        + ".",
        "",
        *[f"- {v}" for v in verdicts],
    ]
    return rows


def grad_of(fn, inputs, precision: str = "float32"):
    """One closure: fn's forward (under autocast for bf16) and its gradients."""

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = fn()
        torch.autograd.grad(out, inputs, torch.ones_like(out))

    return run


def bench_blocks(rounds: int) -> list[str]:
    """Our replacements for PyTorch modules, each against the module it replaces."""
    torch.manual_seed(0)
    d_in = NUM_FIELDS * (NUM_FIELDS - 1) * D_EMBED  # FiBiNET's MLP input
    ours, plain = Linear(d_in, 128), nn.Linear(d_in, 128)
    plain.load_state_dict(ours.state_dict())
    # the bilinear layer's output: [batch, d_in] with the batch innermost
    x32 = torch.randn(d_in, BATCH, requires_grad=True)
    xt = {"float32": x32, "bf16": x32.detach().bfloat16().requires_grad_()}
    hidden = torch.randn(BATCH, 128, requires_grad=True)
    table = torch.randn(sum(CRITEO_CARDINALITIES), D_EMBED, requires_grad=True)
    idx = torch.stack([torch.randint(0, c, (BATCH,)) for c in CRITEO_CARDINALITIES], 1)
    drop, drop_ours = nn.Dropout(0.5), Dropout(0.5)
    fns = {}
    for p, x in xt.items():
        for name, layer in ((f"linear_{p}", plain), (f"ours_{p}", ours)):
            inputs = [x, *layer.parameters()]
            fns[name] = grad_of(lambda x=x, f=layer: f(x.t()), inputs, p)
    fns["dropout"] = grad_of(lambda: drop(hidden), [hidden])
    fns["ours_dropout"] = grad_of(lambda: drop_ours(hidden), [hidden])
    fns["embedding"] = grad_of(lambda: nn.functional.embedding(idx, table), [table])
    fns["ours_embedding"] = grad_of(lambda: lookup(table, idx), [table])
    ms = interleaved_medians(fns, rounds)
    rows = [
        "| forward + backward | PyTorch's (ms) | ours (ms) | **ratio** |",
        "|---|---:|---:|---:|",
    ]
    table_size = f"{sum(CRITEO_CARDINALITIES):,} x {D_EMBED}"
    for key, mine, title in (
        (
            "linear_float32",
            "ours_float32",
            f"first MLP layer ({d_in:,} -> 128) on the bilinear output",
        ),
        ("linear_bf16", "ours_bf16", "the same under bf16 autocast"),
        ("dropout", "ours_dropout", f"dropout p=0.5 on [{BATCH}, 128]"),
        (
            "embedding",
            "ours_embedding",
            f"embedding lookup, [{BATCH}, {N_CAT}] rows of a {table_size} table",
        ),
    ):
        ratio = ms.spread(key, mine)
        rows.append(f"| {title} | {ms[key]:.1f} | {ms[mine]:.1f} | **{ratio}** |")
    return rows


def cpu_name() -> str:
    """The CPU's model name (Linux), else what platform knows."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA device")
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    on_cuda = DEVICE.type == "cuda"
    where = (
        f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
        if on_cuda
        else f"{args.threads} threads, {cpu_name()} ({platform.machine()})"
    )
    lines = [
        "## Bilinear layer and training step",
        "",
        f"Measured {date.today()} by `benchmarks/bench_layers.py --device "
        f"{args.device}`: torch {torch.__version__}, {where}, batch {BATCH}, "
        f"{NUM_FIELDS} fields ({N_NUM} numeric + {N_CAT} categorical), d_embed "
        f"{D_EMBED}. Times: medians of {args.rounds} interleaved rounds; ratios: "
        f"medians of the {args.rounds} per-round ratios, with their interquartile "
        "range in brackets. A training step does what `train.CTRKerasModel` "
        "does each step: forward, BCE on logits, backward, gradients clipped to "
        "norm 1.0 (torchkeras), the trainer's Adam and weight-decay groups.",
        "",
    ]
    sections = [("glibc's default allocator", None)]
    if on_cuda:  # the allocator settings and fast.blocks act on the CPU only
        lines += [
            "On CUDA, skipped: glibc's allocator settings and the building-block "
            "rows (`fast.blocks` falls back to PyTorch's own ops there).",
            "",
        ]
        sections = [("the CUDA caching allocator", None)]
    else:
        sections.append(
            (
                "freed memory kept for reuse "
                "(`fibinet_tutorial.fast.keep_freed_memory`)",
                keep_freed_memory,
            )
        )
    for title, setup in sections:
        if setup is not None and not setup():
            lines += [f"### With {title}", "", "(not available here)", ""]
            continue
        lines += [f"### With {title}", "", "Bilinear layer, forward + backward:", ""]
        lines += bench_bilinear(args.rounds)
        lines += [
            "",
            "Full training step at the seed's Criteo configuration (field_all, "
            "shared bilinear, MLP [128, 64, 32], dropout 0.25, Criteo's "
            f"{sum(CRITEO_CARDINALITIES):,} categories after min-count 10):",
            "",
        ]
        lines += bench_train_step(max(3, args.rounds // 2))
        if not on_cuda:
            lines += [
                "",
                "Building blocks that replace PyTorch's own in the models "
                "(`fibinet_tutorial.fast`: `Linear`, `Dropout`, `lookup`):",
                "",
            ]
            lines += bench_blocks(args.rounds)
        lines.append("")
    lines += [
        "### FiBiNet++ vs FiBiNET vs DeepFM",
        "",
        "Training steps in float32 at Criteo's cardinalities, batch "
        f"{BATCH}, the package's defaults otherwise (dropout "
        f"{train.default_hparams()['mlp_dropout']}, FiBiNET with two field_all "
        "bilinear layers); the same MLP for every model. FiBiNet++ "
        "(`models.FiBiNETPlusPlus`) also without its batch-innermost path, to "
        "show what that path buys. Non-embedding parameters: everything but the "
        "per-category tables (`models.count_non_embedding_parameters`).",
        "",
    ]
    lines += bench_fibinetpp_step(args.rounds)
    lines.append("")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
