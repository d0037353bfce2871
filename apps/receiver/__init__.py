"""snip: apps/receiver."""
