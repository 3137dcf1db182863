"""Scoring predictions against held-out responses and the noise ceiling."""
