"""bas-wsol: Background Activation Suppression for weakly supervised object localization.

The public names are imported on first use (PEP 562), so ``import bas`` and ``bas --help`` do not
load PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bas._lazy import attach

__version__ = "0.1.0"

_LAZY = {
    "BASModel": "bas.models",
    "BASOutput": "bas.models",
    "Localizer": "bas.predict",
    "Prediction": "bas.predict",
    "build_model": "bas.models",
    "list_methods": "bas.methods",
    "list_models": "bas.models",
    "load_checkpoint": "bas.checkpoints",
    "save_model": "bas.checkpoints",
}

__all__ = [
    "BASModel",
    "BASOutput",
    "Localizer",
    "Prediction",
    "__version__",
    "build_model",
    "list_methods",
    "list_models",
    "load_checkpoint",
    "save_model",
]

__getattr__, __dir__ = attach(__name__, _LAZY, globals())

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names come from __getattr__
    from bas.checkpoints import load_checkpoint, save_model
    from bas.methods import list_methods
    from bas.models import BASModel, BASOutput, build_model, list_models
    from bas.predict import Localizer, Prediction
