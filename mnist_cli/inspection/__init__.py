"""Inspecting a finished run from its run directory alone.

`source` finds a run's model and config and reloads its data; `evaluation` (`mnist
evaluate`), `misclassified` (`mnist show-errors`) and `prediction` (`mnist predict`) each
answer one question about the model. Nothing here imports Keras at module import.
"""
