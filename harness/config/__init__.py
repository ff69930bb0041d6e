"""The board inventory (``boards.toml``): validated models, loading with precise errors, board selection."""

from harness.config.loader import Inventory, load_inventory
from harness.config.models import BoardSpec, Defaults

__all__ = ["BoardSpec", "Defaults", "Inventory", "load_inventory"]
