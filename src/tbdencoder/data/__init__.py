"""Dataset formats: readers for the real layouts and the files between stages."""
