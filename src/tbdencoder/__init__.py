"""tbdencoder: encoding models of brain responses to images from frozen deep-network features."""

__version__ = "0.1.0"
