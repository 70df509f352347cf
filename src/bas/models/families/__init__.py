"""Backbone families, one module each; every module registers its architectures on import.

A family module builds the (mid, head) split of each of its networks and registers one
:class:`~bas.models.registry.ModelSpec` per architecture with its
:class:`~bas.models.registry.Family` (pretrained-weight loader, input conventions). Modules whose
name starts with ``_`` are skipped.
"""
