"""hitl: human-in-the-loop image annotation with continuous training."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`hitl.load_model(path)` without importing torch for every `import hitl`."""
    if name == "load_model":
        from hitl.model_file import load_model
        return load_model
    raise AttributeError(f"module 'hitl' has no attribute {name!r}")
