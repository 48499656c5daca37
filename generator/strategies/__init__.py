"""Synthesis strategies: one module per family. Importing this package registers all of them."""

from .base import Recipe, Rendered, Strategy, StrategyContext, get_strategy, register_strategy, strategy_names

__all__ = ["Recipe", "Rendered", "Strategy", "StrategyContext", "get_strategy", "register_strategy", "strategy_names"]
