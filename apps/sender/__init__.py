"""snip: apps/sender."""
