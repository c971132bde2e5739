"""Importing this module imports every method module, so that each registers itself."""
from . import dp_obfuscation, obfuscation  # noqa: F401
from . import ksame  # noqa: F401
from . import adversarial  # noqa: F401
from . import parametric  # noqa: F401
from . import identity_privacy  # noqa: F401
from . import video_mask  # noqa: F401
from . import attr_dp_kanon  # noqa: F401
