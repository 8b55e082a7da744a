"""Measuring models: metrics, paired comparison, the speed and faces-found benchmark, and charts."""
