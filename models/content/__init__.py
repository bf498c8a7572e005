"""Content families: models that score items from their text and metadata, not only from
interactions, so that an item nobody has watched yet is still rankable."""
