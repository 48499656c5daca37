"""Synthesis strategies: one module per family. Importing this package registers all of them."""

from . import blend, cutpaste, ndaa, rotation  # noqa: F401  (modules register their strategies on import)
from . import logical  # noqa: F401  (LogicAL's edge-editing strategies)
from .base import Recipe, Rendered, Strategy, StrategyContext, get_strategy, register_strategy, strategy_names
from .caf import caf_strategies
from .texture import TextureBank

__all__ = [
    "Recipe",
    "Rendered",
    "Strategy",
    "StrategyContext",
    "TextureBank",
    "caf_strategies",
    "get_strategy",
    "register_strategy",
    "strategy_names",
]
