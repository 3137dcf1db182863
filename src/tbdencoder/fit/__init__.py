"""The fit phase: one driver (fit.driver) for every model family and cross-validation scheme; the fMRI and
MEG modules load their rows and write their fits files."""
