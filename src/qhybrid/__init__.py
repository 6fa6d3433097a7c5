"""qhybrid: distributed circuit cutting on hybrid quantum-classical platforms."""

__version__ = "0.1.0"
