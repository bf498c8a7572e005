"""Graph-based families and the graphs they read (interaction graph, heterogeneous item graph)."""
