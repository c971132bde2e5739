"""De-identification methods; every finished method registers itself in :mod:`.base`."""
from .base import Context, Method, MethodOutput, describe, get_method, parse_spec, registry

__all__ = ["Context", "Method", "MethodOutput", "describe", "get_method", "parse_spec", "registry"]
