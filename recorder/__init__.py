"""rt-blackbox recorder: owns the network, the raw files and the store format."""

__version__ = "0.1.0"
