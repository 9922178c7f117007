"""Reproduce a published result end to end: ``python -m fashion_retrieval.reproduce RECIPE``.

The recipes (``tirg-fashion200k``, ``tirg-fashioniq``, ``clip4cir-fashioniq``) are data, in
``training/configs/published/recipes.yaml``; ``reproduce`` trains their stages, runs the
official evaluation and writes ``OUT/reproduction.json`` and ``OUT/reproduction.md``.
"""

from fashion_retrieval.reproduce.recipes import Recipe, get_recipe, load_recipes
from fashion_retrieval.reproduce.runner import reproduce

__all__ = ["Recipe", "get_recipe", "load_recipes", "reproduce"]
