"""IRN's inter-pixel boundary branch (Ahn et al., CVPR 2019), trained from confident labels.

The network (:class:`BoundaryNet`): a torchvision ResNet with strides (2, 2, 2, 1), frozen (eval
mode, no gradient), whose five stages (stem, layer1..layer4) each feed a 1x1 convolution to 32
channels + GroupNorm(4) + ReLU, upsampled to the stride-4 grid (stages 3, 4, 5 by 2, 4, 4); the
160 channels are fused by a 1x1 convolution into one boundary logit per stride-4 pixel.

Training (:func:`train_boundary_net`): from a confident-label map (0 background, k class, 255
unsure) taken at stride 4, every pair of pixels within :data:`TRAIN_RADIUS` with both labels sure
is positive (same label; counted apart for background and foreground pairs) or negative. With
affinity ``a = 1 - max(sigmoid(boundary))`` along the pair's path, the loss is
``(mean_bg(-log a) / 2 + mean_fg(-log a) / 2 + mean_neg(-log(1 - a))) / 2`` (``+1e-5`` inside the
logs). IRN's displacement branch serves instance segmentation only and is left out. SGD without
momentum, weight decay 1e-4, poly learning rate ``lr (1 - t / T)^0.9``; random rescale 0.5-1.5,
horizontal flip, random crop (padding: image 0 after normalisation, label 255).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import models as tvm

from bas.errors import CheckpointError, ConfigError
from bas.wsss.masks import IGNORE_INDEX
from bas.wsss.random_walk import PathIndex, path_affinities, path_index

TRAIN_RADIUS = 10  # pairs of the affinity loss, at stride 4
STRIDE = 4
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FORMAT = "bas-irn"
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


@dataclass
class IRNConfig:
    """Training settings (defaults: the VOC recipe of the BAS / IRN code, docs/segmentation.md)."""

    backbone: str = "resnet50"
    crop: int = 512
    batch_size: int = 32
    epochs: int = 3
    lr: float = 0.1
    weight_decay: float = 1e-4
    momentum: float = 0.0
    radius: int = TRAIN_RADIUS
    scale_range: tuple[float, float] = (0.5, 1.5)
    flip: bool = True
    seed: int = 0
    workers: int = 0

    def check(self) -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(f"IRN backbone {self.backbone!r} is not one of {', '.join(BACKBONES)}")
        for name in ("crop", "batch_size", "epochs", "radius"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"IRN {name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"IRN lr must be a positive number, got {self.lr}")
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ConfigError(f"IRN scale range must be 0 < low <= high, got {self.scale_range}")


# ------------------------------------------------------------------------------------ network


def _edge_layer(channels: int, scale: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(channels, 32, 1, bias=False), nn.GroupNorm(4, 32)]
    if scale > 1:
        layers.append(nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False))
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


class BoundaryNet(nn.Module):
    """The boundary branch on a frozen ResNet: ``(B, 3, H, W)`` -> ``(B, 1, ceil(H/4), ceil(W/4))``
    logits (sigmoid = probability of a class boundary)."""

    def __init__(self, backbone: str = "resnet50"):
        super().__init__()
        from bas.models.families.resnet import _unstride

        if backbone not in BACKBONES:
            raise ConfigError(f"IRN backbone {backbone!r} is not one of {', '.join(BACKBONES)}")
        net = getattr(tvm, backbone)(weights=None)
        _unstride(net.layer4)
        self.backbone_name = backbone
        self.trunk = nn.ModuleList(
            [
                nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool),
                net.layer1,
                net.layer2,
                net.layer3,
                net.layer4,
            ]
        )
        widths = [64] + [w * net.fc.in_features // 512 for w in (64, 128, 256, 512)]
        self.edges = nn.ModuleList(_edge_layer(c, s) for c, s in zip(widths, (1, 1, 2, 4, 4)))
        self.fuse = nn.Conv2d(32 * len(widths), 1, 1)
        for p in self.trunk.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> BoundaryNet:
        super().train(mode)
        self.trunk.eval()  # frozen: BatchNorm keeps its statistics
        return self

    def trunk_state(self) -> dict[str, torch.Tensor]:
        """The trunk's parameters under torchvision's names (``conv1.weight``, ``layer1.0...``)."""
        names = ["conv1", "bn1", None, None, "layer1", "layer2", "layer3", "layer4"]
        out = {}
        for key, value in self.trunk.state_dict().items():
            stage, rest = key.split(".", 1)
            if stage == "0":
                index, rest = rest.split(".", 1)
                out[f"{names[int(index)]}.{rest}"] = value
            else:
                out[f"{names[int(stage) + 3]}.{rest}"] = value
        return out

    def load_trunk(self, state: dict[str, torch.Tensor], where: str) -> None:
        """Load torchvision-named trunk weights (every trunk tensor must be there, shapes equal)."""
        own = self.trunk_state()
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
        if missing:
            raise CheckpointError(f"{where}: no {self.backbone_name} trunk (missing {missing[0]} and others)")
        wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if wrong:
            raise CheckpointError(
                f"{where}: {wrong[0]} has shape {tuple(state[wrong[0]].shape)}, a {self.backbone_name} "
                f"trunk {tuple(own[wrong[0]].shape)} (another depth?)"
            )
        with torch.no_grad():
            for key, target in zip(own, self.trunk.state_dict().values()):
                if key in state:
                    target.copy_(state[key])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = []
            for stage in self.trunk:
                x = stage(x)
                feats.append(x)
        size = feats[1].shape[-2:]
        outs = [edge(f.detach())[..., : size[0], : size[1]] for edge, f in zip(self.edges, feats)]
        return self.fuse(torch.cat(outs, dim=1))


def trunk_from_checkpoint(path: str | Path) -> tuple[str, dict[str, torch.Tensor]]:
    """``(torchvision ResNet name, trunk state)`` of a bas-wsol checkpoint's ResNet backbone."""
    from bas.checkpoints import load_checkpoint
    from bas.models.registry import get_spec

    model = load_checkpoint(str(path), map_location="cpu")
    arch = getattr(model.meta, "arch", None)
    name = get_spec(arch).torchvision_name if arch else None
    if name not in BACKBONES:
        raise CheckpointError(f"{path}: a {arch} backbone, not a ResNet (IRN takes {', '.join(BACKBONES)})")
    state = {}
    for key, value in model.state_dict().items():
        for prefix in ("mid.", "head."):
            if key.startswith(prefix):
                state[key[len(prefix) :]] = value
    return name, state


def build_boundary_net(
    backbone: str = "resnet50", *, init: str = "imagenet", backbone_from: str | Path | None = None
) -> tuple[BoundaryNet, str]:
    """A :class:`BoundaryNet` and a note on its trunk: from ``backbone_from`` (a bas-wsol
    checkpoint, whose depth wins), else ``init`` ``"imagenet"`` (torchvision's weights; random,
    with a note saying so, when they cannot be had) or ``"random"``."""
    if backbone_from is not None:
        backbone, state = trunk_from_checkpoint(backbone_from)
        net = BoundaryNet(backbone)
        net.load_trunk(state, str(backbone_from))
        return net, f"{backbone} trunk from {backbone_from}"
    net = BoundaryNet(backbone)
    if init == "random":
        return net, f"{backbone} trunk at random init (as asked)"
    if init != "imagenet":
        raise ConfigError(f"IRN trunk init {init!r} is not 'imagenet' or 'random'")
    from bas.models.pretrained import _torchvision_imagenet_state

    try:
        state = _torchvision_imagenet_state(backbone)
    except CheckpointError as exc:
        return net, f"{backbone} trunk at RANDOM init: ImageNet weights unavailable ({exc})"
    net.load_trunk(state, f"torchvision's ImageNet {backbone}")
    return net, f"{backbone} trunk from torchvision's ImageNet weights"


# ------------------------------------------------------------------------------------ labels, loss


def stride4_labels(labels: torch.Tensor) -> torch.Tensor:
    """A ``(..., H, W)`` label map at stride 4 (nearest: the top-left pixel of each 4x4 cell)."""
    return labels[..., ::STRIDE, ::STRIDE]


def affinity_labels(
    labels: torch.Tensor, index: PathIndex
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(bg_pos, fg_pos, neg)`` float ``(B, E)`` pair labels of ``(B, h, w)`` stride-4 labels: both
    ends sure (not 255) and equal (background / a class), or both sure and different."""
    flat = labels.reshape(len(labels), -1).long()
    a, b = flat[:, index.src], flat[:, index.dst]
    sure = (a != IGNORE_INDEX) & (b != IGNORE_INDEX)
    same = (a == b) & sure
    return (same & (a == 0)).float(), (same & (a > 0)).float(), (sure & (a != b)).float()


def affinity_loss(
    logits: torch.Tensor, labels: torch.Tensor, index: PathIndex
) -> tuple[torch.Tensor, dict[str, float]]:
    """IRN's affinity loss (without the displacement terms) of ``(B, 1, h, w)`` boundary logits and
    ``(B, h, w)`` stride-4 confident labels; returns the loss and its parts."""
    aff = path_affinities(torch.sigmoid(logits[:, 0]), index)
    bg, fg, neg = affinity_labels(labels, index)

    def mean(weight: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        return (weight * loss).sum() / (weight.sum() + 1e-5)

    pos_loss = -torch.log(aff + 1e-5)
    bg_loss, fg_loss = mean(bg, pos_loss), mean(fg, pos_loss)
    neg_loss = mean(neg, -torch.log(1 + 1e-5 - aff))
    loss = (bg_loss / 2 + fg_loss / 2 + neg_loss) / 2
    parts = {"bg_pos": bg_loss.item(), "fg_pos": fg_loss.item(), "neg": neg_loss.item(), "loss": loss.item()}
    return loss, parts


# ------------------------------------------------------------------------------------ data


def normalise(image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
    """``(H, W, 3)`` float32 of a uint8 image: ``(x / 255 - mean) / std``."""
    return (
        (image.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    ).astype(np.float32)


class AffinityDataset(torch.utils.data.Dataset):
    """Training crops: ``read(i)`` gives the uint8 ``(H, W, 3)`` image and ``(H, W)`` confident labels
    of image ``i``; items are ``(3, crop, crop)`` float images and ``(crop, crop)`` int64 labels."""

    def __init__(self, read: Callable[[int], tuple[np.ndarray, np.ndarray]], count: int, config: IRNConfig):
        self.read, self.count, self.config = read, count, config

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, i, torch.randint(0, 2**31, ()).item()])
        image, labels = self.read(i)
        scale = rng.uniform(*cfg.scale_range)
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
        labels = np.asarray(Image.fromarray(labels).resize(size, Image.NEAREST))
        x = normalise(image)
        if cfg.flip and rng.random() < 0.5:
            x, labels = x[:, ::-1], labels[:, ::-1]
        crop = cfg.crop
        h, w = labels.shape
        out_x = np.zeros((crop, crop, 3), np.float32)
        out_y = np.full((crop, crop), IGNORE_INDEX, np.uint8)
        sy, sx = rng.integers(0, max(h - crop, 0) + 1), rng.integers(0, max(w - crop, 0) + 1)  # source
        dy, dx = rng.integers(0, max(crop - h, 0) + 1), rng.integers(0, max(crop - w, 0) + 1)  # target
        ch, cw = min(crop, h), min(crop, w)
        out_x[dy : dy + ch, dx : dx + cw] = x[sy : sy + ch, sx : sx + cw]
        out_y[dy : dy + ch, dx : dx + cw] = labels[sy : sy + ch, sx : sx + cw]
        return torch.from_numpy(out_x.transpose(2, 0, 1).copy()), torch.from_numpy(out_y.astype(np.int64))


# ------------------------------------------------------------------------------------ training


def poly_lr(lr: float, step: int, total: int, power: float = 0.9) -> float:
    return lr * (1 - step / max(total, 1)) ** power


def train_boundary_net(
    net: BoundaryNet,
    dataset: torch.utils.data.Dataset,
    config: IRNConfig,
    *,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train the boundary branch (the trunk stays frozen); returns the loss parts of every step."""
    from bas.errors import TrainingError

    config.check()
    device = torch.device(device)
    net.to(device).train()
    batch = min(config.batch_size, len(dataset))
    if batch < 1:
        raise ConfigError("no images to train IRN on")
    generator = torch.Generator().manual_seed(config.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=config.workers,
        generator=generator,
    )
    total = len(loader) * config.epochs
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    grid = (math.ceil(config.crop / STRIDE),) * 2
    index = path_index(grid, config.radius).to(device)
    history, step = [], 0
    for _ in range(config.epochs):
        for images, labels in loader:
            for group in optimizer.param_groups:
                group["lr"] = poly_lr(config.lr, step, total)
            logits = net(images.to(device))
            loss, parts = affinity_loss(logits, stride4_labels(labels.to(device)), index)
            if not math.isfinite(parts["loss"]):
                raise TrainingError(f"IRN loss is {parts['loss']} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            history.append(parts)
            if progress is not None:
                progress(step, total, parts)
    net.eval()
    return history


# ------------------------------------------------------------------------------------ files


def save_boundary_net(path: str | Path, net: BoundaryNet, config: IRNConfig, note: str) -> None:
    """Write an IRN checkpoint (torch file of tensors and plain values), atomically."""
    from bas.io import atomic_path

    payload = {
        "format": FORMAT,
        "format_version": 1,
        "backbone": net.backbone_name,
        "trunk": note,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()},
        "state_dict": net.state_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_boundary_net(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[BoundaryNet, dict[str, Any]]:
    """The :class:`BoundaryNet` of an IRN checkpoint (eval mode) and the checkpoint's settings."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such IRN checkpoint") from None
    except Exception as exc:  # a corrupt or foreign file: pickle, zip or torch errors
        raise CheckpointError(f"{path}: not an IRN checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an IRN checkpoint (format is not {FORMAT!r})")
    net = BoundaryNet(payload["backbone"])
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: {' '.join(str(exc).split())}") from None
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    return net.to(device).eval(), info


@torch.no_grad()
def boundary_map(net: BoundaryNet, image: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """The ``(ceil(H/4), ceil(W/4))`` boundary probabilities of a uint8 ``(H, W, 3)`` image: the
    logits of the image and of its flip (flipped back) averaged, then a sigmoid."""
    h, w = image.shape[:2]
    x = torch.from_numpy(normalise(image).transpose(2, 0, 1).copy())
    pad_h, pad_w = (-h) % 16, (-w) % 16
    x = F.pad(x, (0, pad_w, 0, pad_h))[None].to(device)
    logits = net(torch.cat([x, x.flip(-1)]))[:, 0]
    fused = torch.sigmoid(logits[0] / 2 + logits[1].flip(-1) / 2)
    return fused[: math.ceil(h / STRIDE), : math.ceil(w / STRIDE)].cpu()
