"""Lightning callbacks: figures, predictions, exports, summaries, alignment, log dir."""
