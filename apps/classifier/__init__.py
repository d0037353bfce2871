"""snip: apps/classifier."""
