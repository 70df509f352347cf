"""ImageNet initialisation of a model's backbone (``mid`` and ``head``): the families' default loader.

Reads only weight files (never a model of ours), so it needs no checkpoint reader: the safe
``torch.load`` and the key helpers of :mod:`bas.checkpoints.safe` / :mod:`bas.checkpoints.keys`,
which import no model.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from bas.checkpoints.keys import BACKBONE, assign_in_order, load_tensors, strip_wrappers
from bas.checkpoints.safe import is_tensor_dict, torch_load
from bas.errors import CheckpointError
from bas.models.registry import get_spec

IMAGENET_HEADS = ("fc.", "classifier.", "AuxLogits.")  # ImageNet classifiers, never loaded


def load_imagenet_weights(model: nn.Module, path: str | Path | None = None) -> None:
    """Initialise the backbone (``mid`` and ``head``) from ImageNet weights (docs/method.md §4), in place.

    ``path=None`` takes torchvision's ``IMAGENET1K_V1`` weights of the architecture through the
    torchvision API (downloaded once into ``torch.hub.get_dir()/checkpoints``). For ResNet50 that
    is ``resnet50-0676ba61.pth``, the re-serialisation of the ``resnet50-19c8e357.pth`` file the
    paper used (same weights, pytorch/vision#3620); either file can also be passed as ``path``.
    MobileNetV1 has no torchvision weights: pass the path of ``mobilenet_v1_with_relu_69_5.pth``.

    A local file is a state dict whose ImageNet classifier (``fc``, ``classifier``, ``AuxLogits``)
    is ignored. If its other keys are our backbone's names (torchvision ResNets and Inception v3)
    they are matched by name; otherwise (torchvision VGG16 ``features.N``, the MobileNetV1 file's
    ``N.M``) the tensors are assigned in order, as the authors did, and every shape is checked.
    ``num_batches_tracked`` entries are optional. A ``.safetensors`` file is a bas-wsol checkpoint
    whose backbone (of the same architecture) is taken by name, e.g. a trained classifier's trunk.
    The method's new layers keep their init.
    Inception v3 is used like the authors do, without torchvision's ``transform_input``.
    """
    if path is None:
        state = _torchvision_imagenet_state(model.arch)
        where = f"torchvision's ImageNet weights for {model.arch}"
    elif Path(path).suffix == ".safetensors":  # a bas-wsol checkpoint: its backbone, by name
        state, where = _checkpoint_backbone(path), f"the backbone of {path}"
    else:
        state = torch_load(path)
        where = str(path)
        if not is_tensor_dict(state):
            raise CheckpointError(f"{path} is not a state dict of ImageNet weights")
    state = {k: v for k, v in strip_wrappers(state).items() if not k.startswith(IMAGENET_HEADS)}
    model_keys = model.state_dict().keys()
    names = {k: next((p + k for p in BACKBONE if p + k in model_keys), None) for k in state}
    if all(names.values()):
        mapped = {names[k]: v for k, v in state.items()}
    else:
        mapped = assign_in_order(state, [k for k in model_keys if k.startswith(BACKBONE)], where)
    load_tensors(model, mapped, where, prefixes=BACKBONE)


def _checkpoint_backbone(path: str | Path) -> dict[str, torch.Tensor]:
    """The backbone tensors (``mid`` and ``head``) of a bas-wsol checkpoint, without the prefixes."""
    from bas.checkpoints import load_checkpoint

    state = load_checkpoint(str(path), map_location="cpu").state_dict()
    return {k[len(p) :]: v for k, v in state.items() for p in BACKBONE if k.startswith(p)}


def _torchvision_imagenet_state(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's IMAGENET1K_V1 state dict of ``arch``, from its download cache."""
    spec = get_spec(arch)
    if spec.torchvision_name is None:
        if spec.manual_weights is not None:
            name, url = spec.manual_weights
            raise CheckpointError(
                f"torchvision has no ImageNet weights for {arch}: download {name} ({url}) "
                "and pass its path as pretrained=PATH (config model.pretrained)"
            )
        raise CheckpointError(f"no ImageNet weights are known for {arch}; pass the path of a weight file")
    weights = torchvision.models.get_model_weights(spec.torchvision_name)["IMAGENET1K_V1"]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    try:
        return weights.get_state_dict(progress=True, map_location="cpu", weights_only=True)
    except OSError as exc:  # no network: URLError, socket errors, ...
        if cached.is_file():
            raise CheckpointError(f"cannot read {cached}: {exc}") from None
        raise CheckpointError(
            f"cannot download torchvision's ImageNet weights for {arch} ({weights.url}): {exc}. "
            f"Offline, put that file at {cached} or pass its path as pretrained=PATH"
        ) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise CheckpointError(
            f"cannot read torchvision's cached weight file {cached} ({exc}); delete it to download it again"
        ) from None
