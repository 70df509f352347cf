"""``bas export``: the inference path (image in; logits and fused map out) as ONNX or TorchScript."""

from __future__ import annotations

import argparse

from bas.commands._common import add_checkpoint_arg, add_top_k_arg, positive_int
from bas.errors import BASError

# The output sets of bas.export (kept here so that `bas export --help` does not import torch).
OUTPUTS = {
    "fused": "logits (B, {k}), maps (B, {s}, {s})",
    "classes": "logits (B, {k}), probs (B, {k}), class_maps (B, {k}, {s}, {s})",
    "top-k": "logits (B, {k}), probs (B, {k}), top_classes (B, {t}), top_probs (B, {t}), top_maps (B, {t}, {s}, {s})",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint's inference path to ONNX or TorchScript",
        description="Input 'images' (B, 3, S, S), normalised with the checkpoint's mean/std. Outputs "
        "(--outputs): fused (default) 'logits' (B, K) and 'maps' (B, S, S), the mean foreground "
        "map of the top-k classes, min-max normalised and upsampled to S, in [0, 1]; classes "
        "'logits', 'probs' (B, K) and 'class_maps' (B, K, S, S), every class's own map; top-k "
        "'logits', 'probs', 'top_classes' and 'top_probs' (B, k) and 'top_maps' (B, k, S, S), the "
        "k most probable classes and their maps (for multi-object post-processing). The batch "
        "dimension is dynamic; top-k and S are fixed in the graph. The checkpoint's "
        "metadata (class names, threshold, sizes, mean/std) is stored in the file.",
    )
    p.add_argument("output", metavar="OUT", help="file to write (e.g. model.onnx, model.pt)")
    add_checkpoint_arg(p)
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"), help="output format")
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset version (default: 17)")
    p.add_argument(
        "--input-size", type=positive_int, help="image side S (default: the checkpoint's input size)"
    )
    p.add_argument(
        "--outputs",
        choices=tuple(OUTPUTS),
        default="fused",
        help="fused: logits and the fused map (default); classes: probabilities and every class's "
        "map; top-k: the top-k classes, their probabilities and maps",
    )
    add_top_k_arg(
        p,
        help="classes whose maps are fused in the graph, or returned with --outputs top-k "
        "(default: the checkpoint's)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bas.checkpoints import load_checkpoint
    from bas.export import export_model, read_export_metadata

    if args.top_k is not None and args.top_k < 1:
        raise BASError(f"--top-k must be >= 1, got {args.top_k}")
    model = load_checkpoint(args.checkpoint, map_location="cpu")
    if args.input_size is not None and args.input_size < model.min_input_size:
        raise BASError(
            f"--input-size must be at least {model.min_input_size} for {model.arch}, got {args.input_size}"
        )
    path = export_model(
        model,
        args.output,
        args.format,
        top_k=args.top_k,
        input_size=args.input_size,
        opset=args.opset,
        outputs=args.outputs,
    )
    meta = read_export_metadata(path)
    size, top_k = meta["input_size"], meta["top_k"]
    shapes = OUTPUTS[args.outputs].format(k=model.num_classes, s=size, t=top_k)
    print(
        f"wrote {path} ({args.format}): images (B, 3, {size}, {size}) -> {shapes}; "
        f"top_k={top_k}, threshold {meta['threshold']}"
    )
    return 0
