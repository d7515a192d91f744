"""Training: configs and presets of the two stages, optimiser and schedule, the loop."""
