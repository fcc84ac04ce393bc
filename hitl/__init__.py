"""hitl: human-in-the-loop image annotation with continuous training."""

__version__ = "0.1.0"
