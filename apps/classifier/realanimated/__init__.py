"""The "real vs animated" models: features, fitting tools, the generated dataset and the classifiers."""
