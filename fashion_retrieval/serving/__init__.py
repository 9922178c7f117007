"""What both UIs, the Space and the benchmarks go through: catalogues, models over them,
queries prepared once, batching, refinement sessions, and the embedded default."""
