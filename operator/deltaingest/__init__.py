"""deltaingest: keeps Delta Lake tables fed in real time and healthy."""

__version__ = "0.3.0"
