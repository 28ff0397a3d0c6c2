"""notes -> chunks: read a notes folder verbatim and cut it along its own structure."""
