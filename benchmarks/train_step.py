"""Cost of one BAS training step against one plain-classifier step (issue: BAS step <= 1.45x plain).

Both steps use the same backbone, head and classifier (``classifier_cls``) on the same batch; the
plain step has no generator and no erase branch: ``CE(GAP(classifier(head(mid(x)))))``. Steps
are timed alternately in one process (so machine noise hits both alike) and the median is
reported. Memory: the bytes of the tensors autograd saves for backward (exact, in-process), and
the peak resident memory of a child process running only that kind of step (``--rss``).

    python benchmarks/train_step.py                 # resnet50 and vgg16, batch 8, 224x224, CPU
    python benchmarks/train_step.py --quick         # smoke run: resnet18, batch 2, 64x64, 2 steps, no verdict
    python benchmarks/train_step.py --archs deit_small   # needs timm; conv1x1 classifier (docs/vit.md)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import bas
from bas.commands._common import add_alias
from bas.losses import bas_loss
from bas.models.families.vit import TIMM_NAMES


def plain_loss(model, images, labels):
    logits = model.classifier(model.head(model.mid(images))).mean(dim=(2, 3))
    return F.cross_entropy(logits, labels)


def bas_step_loss(model, images, labels):
    return bas_loss(model(images, labels), labels, alpha=0.5, beta=1.5, variant="ijcv2023", arch=model.arch)[
        0
    ]


STEPS = {"plain": plain_loss, "bas": bas_step_loss}
TARGETS = {"cnn": 1.45, "vit": 1.35}  # BAS / plain step time (the CNN and the vision-transformer issues)
SMOKE = "smoke run: not a measurement"


def make(arch: str, batch: int, size: int, classes: int):
    torch.manual_seed(0)
    options = {"hidden": 0} if arch in TIMM_NAMES else {}  # the vision transformers' conv1x1 classifier
    model = bas.build_model(arch, classes, **options).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    images = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, classes, (batch,))
    return model, opt, images, labels


def one_step(kind, model, opt, images, labels) -> float:
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    STEPS[kind](model, images, labels).backward()
    opt.step()
    return time.perf_counter() - start


def saved_bytes(kind, model, images, labels) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass of one step."""
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = STEPS[kind](model, images, labels)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values())


def child_rss(kind, arch, batch, size, classes, steps) -> float:
    """Peak RSS (MiB) of a fresh process that runs ``steps`` steps of one kind."""
    code = (
        f"import sys; sys.argv=['x']; import benchmarks.train_step as b, resource; "
        f"m,o,x,y=b.make({arch!r},{batch},{size},{classes}); "
        f"[b.one_step({kind!r},m,o,x,y) for _ in range({steps})]; "
        f"print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024.0


def bench(arch, batch, size, classes, steps, warmup, rss):
    model, opt, images, labels = make(arch, batch, size, classes)
    for _ in range(warmup):
        for kind in STEPS:
            one_step(kind, model, opt, images, labels)
    times = {kind: [] for kind in STEPS}
    for i in range(steps):
        order = list(STEPS) if i % 2 == 0 else list(reversed(STEPS))
        for kind in order:
            times[kind].append(one_step(kind, model, opt, images, labels))
    med = {k: statistics.median(v) for k, v in times.items()}
    mem = {k: saved_bytes(k, model, images, labels) / 2**20 for k in STEPS}
    row = {
        "arch": arch,
        "batch": batch,
        "size": size,
        "steps": steps,
        "plain_s": med["plain"],
        "bas_s": med["bas"],
        "time_ratio": med["bas"] / med["plain"],
        "plain_saved_MiB": mem["plain"],
        "bas_saved_MiB": mem["bas"],
        "saved_ratio": mem["bas"] / mem["plain"],
    }
    if rss:
        peak = {k: child_rss(k, arch, batch, size, classes, 2) for k in STEPS}
        row.update(
            plain_rss_MiB=peak["plain"], bas_rss_MiB=peak["bas"], rss_ratio=peak["bas"] / peak["plain"]
        )
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=["resnet50", "vgg16"])
    p.add_argument("--batch-size", dest="batch", type=int, default=8, help="images per step (default: 8)")
    add_alias(p, "--batch", "--batch-size", "batch", type=int)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--classes", type=int, default=200)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--rss", action="store_true", help="also measure peak RSS in child processes")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: resnet18, batch 2, 64x64, 2 steps, no verdict"
    )
    p.add_argument("--json", help="also write the rows as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.archs, args.batch, args.size, args.steps, args.warmup = ["resnet18"], 2, 64, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.size}x{args.size}, {args.classes} classes, median of {args.steps} alternating steps"
    )
    rows = [
        bench(a, args.batch, args.size, args.classes, args.steps, args.warmup, args.rss) for a in args.archs
    ]
    header = (
        f"{'arch':10s} {'plain s':>9s} {'BAS s':>9s} {'ratio':>7s} {'saved MiB plain/BAS':>21s} {'ratio':>7s}"
    )
    if args.rss:
        header += f" {'peak RSS MiB plain/BAS':>24s} {'ratio':>7s}"
    print(header)
    for r in rows:
        line = (
            f"{r['arch']:10s} {r['plain_s']:9.3f} {r['bas_s']:9.3f} {r['time_ratio']:7.2f} "
            f"{r['plain_saved_MiB']:10.0f}/{r['bas_saved_MiB']:<10.0f} {r['saved_ratio']:7.2f}"
        )
        if args.rss:
            line += f" {r['plain_rss_MiB']:12.0f}/{r['bas_rss_MiB']:<11.0f} {r['rss_ratio']:7.2f}"
        print(line)
    if args.quick:
        print(SMOKE)
    else:
        for r in rows:
            target = TARGETS["vit" if r["arch"] in TIMM_NAMES else "cnn"]
            verdict = "met" if r["time_ratio"] <= target else "NOT met"
            print(f"target {r['arch']}: BAS step <= {target}x plain step -> {verdict}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
