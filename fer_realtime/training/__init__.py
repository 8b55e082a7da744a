"""Making models: architectures, the training recipes and their resumable runs, the Training tab's experiments
and background jobs, PCA, transfer learning, weight averaging, ensembles and int8 copies."""
