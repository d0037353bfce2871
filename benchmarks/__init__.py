"""Side-by-side benchmarks (snip vs TCP vs email) and microbenchmarks."""
