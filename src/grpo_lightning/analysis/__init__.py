"""Reading finished runs (summary files, TensorBoard scalars), their statistics, comparisons and reports; launching
the runs they compare."""
