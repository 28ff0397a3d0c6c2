"""chunks -> index -> retrieve -> fuse -> rerank: hybrid BM25 + dense search over the notes."""
