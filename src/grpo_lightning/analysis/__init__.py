"""Reading finished runs: summaries, statistics, comparisons, reports."""
