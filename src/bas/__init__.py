"""bas-wsol: Background Activation Suppression for weakly supervised object localization."""

__version__ = "0.1.0"

from bas.checkpoints import load_checkpoint, save_model  # noqa: E402
from bas.methods import list_methods  # noqa: E402
from bas.models import BASModel, BASOutput, build_model, list_models  # noqa: E402
from bas.predict import Localizer, Prediction  # noqa: E402

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
