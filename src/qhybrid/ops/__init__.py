"""Operating the engine: chaos game days and the numeric drift report."""
