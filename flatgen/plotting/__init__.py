"""Display objects: they draw arrays computed elsewhere and never touch torch."""

from ._basin import OKABE_ITO, BasinDisplay

__all__ = ["BasinDisplay", "OKABE_ITO"]
