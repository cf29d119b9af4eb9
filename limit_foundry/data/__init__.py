"""Data for LIMIT studies: sources, prompt templates, subsets and mixtures, MDS shards."""
