"""General recommenders: no order, no side information (popularity, EASE)."""
