"""The BAS model, kept importable from here: it lives with its method in :mod:`bas.methods.bas`."""

from bas.methods.bas import VARIANTS, BASModel, make_classifier, make_generator
from bas.methods.base import BASOutput

__all__ = ["VARIANTS", "BASModel", "BASOutput", "make_classifier", "make_generator"]
