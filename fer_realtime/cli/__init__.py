"""The command line: one module per group of commands (media, evaluate, train, rework), all thin shells over the
library."""
