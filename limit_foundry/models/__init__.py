"""Model loaders registered into LLM Foundry, and the small models tests and demos use."""
