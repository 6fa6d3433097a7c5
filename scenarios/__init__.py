"""Reference scenarios, shipped inside the package as ``qhybrid.scenarios``."""

from qhybrid.scenarios.cutting import SCENARIO as CUTTING

SCENARIOS = {CUTTING.name: CUTTING}

__all__ = ["SCENARIOS", "CUTTING"]
