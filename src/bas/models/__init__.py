"""Models: backbone splits, the BAS model and the registry."""

from bas.models.bas import BASModel, BASOutput
from bas.models.registry import ModelSpec, build_model, get_spec, list_models

__all__ = ["BASModel", "BASOutput", "ModelSpec", "build_model", "get_spec", "list_models"]
