"""Composed image retrieval for fashion: TIRG and its rivals.

Nothing heavy happens at import time: models, data and devices are created by the
functions that need them.
"""

__version__ = "0.1.0"
