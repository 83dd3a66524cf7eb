"""Taking a trained network elsewhere: `mnist export` (ONNX, SavedModel, LiteRT), each file
checked with its own runtime before it is put in place. `graph.py` builds the model that is
exported, `formats.py` writes and loads each format, `exporting.py` runs the export and its
check, `model_card.py` writes the MODEL.md beside the file.
"""
