"""Datasets: one module per format (FER2013 CSV, class folders, X/Y .npy pairs), uploads, and the splits."""
