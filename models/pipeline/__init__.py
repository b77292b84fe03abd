"""The pipeline: resolving a model name to a folder, loading its components, device and dtype choice."""
