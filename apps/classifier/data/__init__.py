"""Data shipped with the classifiers: the animal description table and the fitted real-vs-animated parameters.

A package (not a plain folder) so that setuptools ships its JSON files in wheels.
"""
