"""One model per module, a config dataclass each, built by name through ``registry``."""
from .registry import available, build, config_from_dict, register, spec

__all__ = ["available", "build", "config_from_dict", "register", "spec"]
