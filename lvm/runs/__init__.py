"""Layer 4, runs: the command line, checkpoint files and their errors, the checkpoint callback, RNG state, the metrics
file, loggers and the start-up heap. Imports the model and everything below it."""
