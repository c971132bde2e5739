"""facedeid — remove the identity from faces in photos while keeping the rest usable."""
from __future__ import annotations

__version__ = "0.1.0"

from .api import anonymize, anonymize_paths, detect, detect_file  # noqa: E402
from .methods import describe, get_method, registry  # noqa: E402


def methods() -> dict[str, dict]:
    """Every registered method with its kind, book reference and parameter defaults."""
    return {name: describe(cls) for name, cls in registry().items()}


__all__ = ["anonymize", "anonymize_paths", "detect", "detect_file", "get_method", "methods", "__version__"]
