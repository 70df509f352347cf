"""Vision transformers through timm (DeiT, ViT patch-16) as (mid, head) backbone splits (docs/vit.md).

The split is taken after block ``k`` (default: two thirds of the depth, block 8 of 12):

* ``mid``: patch embedding, class token, position embedding, ``blocks[:k]``; it returns the patch
  tokens after block ``k`` as a grid (B, C, H/16, W/16), 14x14 at 224x224 input. The generator
  reads this grid and the erase branch multiplies it by ``1 - M``.
* ``head``: a class token, ``blocks[k:]`` and the final norm over a (B, C, h, w) grid; it returns
  the final patch tokens as a grid of the same size, where the classifier (a conv1x1, ``hidden``
  0) and global average pooling give the class maps and scores, as in TS-CAM and SAT.

The class token of ``head`` is its own parameter (``head.cls_token``, initialised to the network's
learned class token plus its position embedding); both passes start from it, so ``head(grid)`` is
a pure function of the grid. The main pass's class token after block ``k`` is dropped: otherwise
the erase branch would carry the evidence that self-attention spread into it from the unerased
foreground. Parameter names inside ``mid`` and ``head`` are timm's (``blocks.9.attn.qkv.weight``).

Input sizes other than the network's use timm's position-embedding interpolation
(``resample_abs_pos_embed``). timm is an optional dependency (the ``timm`` extra); weights come
only from a local file in timm's format (:func:`load_timm_weights`), never from the network.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from torch import nn

from bas._optional import require
from bas.checkpoints.keys import strip_wrappers
from bas.checkpoints.safe import is_tensor_dict, torch_load
from bas.errors import CheckpointError
from bas.models.backbones import Backbone
from bas.models.registry import Family, ModelSpec, register

# our name -> timm's name (patch 16, 224x224, one class token)
TIMM_NAMES = {
    "deit_tiny": "deit_tiny_patch16_224",
    "deit_small": "deit_small_patch16_224",
    "deit_base": "deit_base_patch16_224",
    "vit_small_patch16": "vit_small_patch16_224",
    "vit_base_patch16": "vit_base_patch16_224",
}
PATCH = 16


def _timm():
    return require("timm", "timm", "vision transformer backbones")


def create_timm_model(arch: str, img_size: int = 224) -> nn.Module:
    """timm's network of ``arch`` with random weights and no classifier."""
    if arch not in TIMM_NAMES:
        raise ValueError(f"unknown vision transformer {arch!r}; valid names: {', '.join(TIMM_NAMES)}")
    return _timm().create_model(TIMM_NAMES[arch], pretrained=False, num_classes=0, img_size=img_size)


def default_split_block(depth: int) -> int:
    """Two thirds of the depth (8 of 12 blocks)."""
    return round(2 * depth / 3)


def _to_grid(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Patch tokens (B, h*w, C) -> grid (B, C, h, w)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


class _Blocks(nn.Module):
    """Transformer blocks under their timm indices (``blocks.<i>``), run in order."""

    def __init__(self, blocks: dict[int, nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleDict({str(i): b for i, b in blocks.items()})

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        return x


class ViTMid(_Blocks):
    """Patch embedding + class token + position embedding + ``blocks[:k]`` -> patch grid (B, C, h, w)."""

    def __init__(self, net: nn.Module, split_block: int):
        super().__init__({i: net.blocks[i] for i in range(split_block)})
        self.patch_embed = net.patch_embed
        self.cls_token = net.cls_token
        self.pos_embed = net.pos_embed
        self.norm_pre = net.norm_pre
        self.grid_size = tuple(net.patch_embed.grid_size)
        # the patch embedding accepts any multiple of the patch size; the position embedding follows
        self.patch_embed.strict_img_size = False

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """The position embedding (1, 1 + h*w, C), interpolated by timm for a grid other than the network's."""
        if (h, w) == self.grid_size:
            return self.pos_embed
        if torch.onnx.is_in_onnx_export():  # ONNX has no antialiased bicubic resize
            size = self.grid_size[0] * PATCH
            raise ValueError(f"a vision transformer exports to ONNX at its own input size only ({size} px)")
        from timm.layers import resample_abs_pos_embed

        return resample_abs_pos_embed(self.pos_embed, (h, w), self.grid_size, num_prefix_tokens=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(images)  # (B, C, h, w)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        x = self.patch_embed.norm(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm_pre(x + self.position_embedding(h, w))
        return _to_grid(self.run_blocks(x)[:, 1:], h, w)


class ViTHead(_Blocks):
    """A fresh class token + ``blocks[k:]`` + final norm over a patch grid -> final patch grid."""

    def __init__(self, net: nn.Module, split_block: int):
        super().__init__({i: net.blocks[i] for i in range(split_block, len(net.blocks))})
        self.cls_token = nn.Parameter(cls_token_of(net))
        self.norm = net.norm

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        b, c, h, w = grid.shape
        x = torch.cat([self.cls_token.expand(b, -1, -1), grid.flatten(2).transpose(1, 2)], dim=1)
        return _to_grid(self.norm(self.run_blocks(x))[:, 1:], h, w)


def cls_token_of(net: nn.Module) -> torch.Tensor:
    """The learned class token with its position embedding, (1, 1, C): what ``head`` starts from."""
    return (net.cls_token + net.pos_embed[:, :1]).detach().clone()


def _check_supported(net: nn.Module, arch: str) -> None:
    if (
        net.cls_token is None
        or net.num_prefix_tokens != 1
        or net.no_embed_class
        or net.pos_embed is None
        or tuple(net.patch_embed.patch_size) != (PATCH, PATCH)
    ):
        raise ValueError(f"{arch}: only patch-16 vision transformers with one class token are supported")


def vit_split(
    arch: str, split_block: int | None = None, img_size: int = 224, net: nn.Module | None = None
) -> Backbone:
    """The (mid, head) split of a timm vision transformer after block ``split_block``.

    Args:
        arch: a name of :data:`TIMM_NAMES`.
        split_block: ``k``, the number of blocks in ``mid`` (default: two thirds of the depth).
        img_size: the size the position embedding is made for (other sizes are interpolated).
        net: an existing timm network of ``arch`` to split (default: a new one, random weights).
    """
    net = create_timm_model(arch, img_size) if net is None else net
    _check_supported(net, arch)
    depth = len(net.blocks)
    k = default_split_block(depth) if split_block is None else split_block
    if not 1 <= k < depth:
        raise ValueError(f"split_block must be in [1, {depth - 1}] for {arch}, got {k}")
    return Backbone(ViTMid(net, k), ViTHead(net, k), net.embed_dim, net.embed_dim)


def load_timm_weights(model: nn.Module, path: str | Path | None) -> None:
    """The family's ``load_pretrained``: initialise ``model.mid`` / ``model.head`` from a local file of timm weights of ``model.arch``.

    The file is a state dict of the timm network (optionally under ``state_dict`` or ``model``);
    its classifier (``head.*``, ``head_dist.*``, ``fc_norm.*``) is ignored, every other key must
    match timm's network exactly. The weights are loaded into timm's network, which is then split
    like ``model``. Nothing is downloaded: ``path`` None is an error.
    """
    arch = model.arch
    if path is None:
        raise CheckpointError(
            f"{arch}: no weights are downloaded for vision transformers; pass the path of a timm "
            f"state dict of {TIMM_NAMES.get(arch, arch)} (model.pretrained=PATH)"
        )
    state = torch_load(path)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not is_tensor_dict(state):
        raise CheckpointError(f"{path}: not a state dict of timm weights")
    state = strip_wrappers(state)
    state = {k: v for k, v in state.items() if not k.startswith(("head.", "head_dist.", "fc_norm."))}
    net = create_timm_model(arch, _img_size(model))
    if "pos_embed" in state and state["pos_embed"].shape != net.pos_embed.shape:
        from timm.layers import resample_abs_pos_embed

        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], tuple(net.patch_embed.grid_size))
    expected = set(net.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: not timm weights of {TIMM_NAMES[arch]}"
            + (f"; missing keys: {', '.join(missing[:5])}" if missing else "")
            + (f"; unexpected keys: {', '.join(unexpected[:5])}" if unexpected else "")
        )
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: {str(exc).splitlines()[-1].strip()}") from None
    split = vit_split(arch, len(model.mid.blocks), _img_size(model), net=net)
    model.mid.load_state_dict(split.mid.state_dict())
    model.head.load_state_dict(split.head.state_dict())


def _img_size(model: nn.Module) -> int:
    return model.mid.grid_size[0] * PATCH


# The ImageNet mean and std (DeiT's), as the data pipeline uses for every family; timm's ViT weights
# (augreg) were trained with 0.5 / 0.5, a difference fine-tuning has to absorb (docs/vit.md).
FAMILY = Family("vit", load_pretrained=load_timm_weights)

for _arch, _timm_name in TIMM_NAMES.items():
    register(
        ModelSpec(
            _arch,
            partial(vit_split, _arch),
            False,
            FAMILY,
            min_input_size=PATCH,
            description=f"timm {_timm_name}, mid = patch grid after block 2/3 of the depth, head = the rest",
        )
    )
