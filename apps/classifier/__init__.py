"""Classifiers behind one registry (``apps.classifier.registry``).

* ``animal``: the animal describer, a torchvision ImageNet model (ConvNeXt-Tiny by default) or
  your own, answering in the original email project's schema (``apps.classifier.animal``);
* ``bytes``, ``bilateral``, ``colors``, ``combined``: the "real vs animated" models of the original
  TCP project, refitted on a generated set (``apps.classifier.realanimated``; figures in RESULTS.md).

Every classifier takes image bytes or an RGB numpy array and returns a JSON-serialisable dict,
never raising (``apps.classifier.base``). `snip classify` is the command line (``apps.classifier.cli``).
"""
