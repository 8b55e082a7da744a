"""The base every other part stands on: emotion labels, errors, atomic writes, image decoding, model files and
their metadata, and dataset faces as model input. Imports nothing else of the package."""
