"""Training data for mianjing's own cross-encoder reranker (questions.py: synthetic questions)."""
