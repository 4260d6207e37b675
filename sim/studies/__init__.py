"""Studies built on the core: LLM phases, fusion comparisons, design-space sweeps, array validation."""
