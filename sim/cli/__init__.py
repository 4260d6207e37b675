"""The `tilesim` command line."""
