"""belabox-metrics: the on-device metrics agent for BELABOX encoders."""

__version__ = "0.1.0"
