"""The search layer: index kinds, whitening, the per-item store beside an index, and the
``Retriever`` that answers a query over a catalogue with one model."""
