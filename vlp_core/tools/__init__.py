"""Tools around the engine: `vlp diagnose` (does prompt learning have room?) and `vlp bench` (speed)."""
