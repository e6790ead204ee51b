"""Stage 2: structured pruning and CTC charset slimming."""
