"""The animal describer: a torchvision ImageNet model (or your own) and the description table."""
