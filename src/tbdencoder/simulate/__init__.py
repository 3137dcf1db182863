"""Synthetic datasets with a known ground truth, in the layouts the pipeline reads."""

from tbdencoder.simulate.fmri import simulate_fmri

__all__ = ["simulate_fmri"]
