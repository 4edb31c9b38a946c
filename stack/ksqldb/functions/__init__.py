"""Scalar functions: importing this package fills the registry."""

from . import collections as _collections  # noqa: F401
from . import conversions as _conversions  # noqa: F401
from . import datetime as _datetime  # noqa: F401
from . import maths as _maths  # noqa: F401
from . import nulls as _nulls  # noqa: F401
from . import strings as _strings  # noqa: F401
from . import urls as _urls  # noqa: F401
from .registry import REGISTRY, Resolved, resolve

__all__ = ["REGISTRY", "Resolved", "resolve"]
