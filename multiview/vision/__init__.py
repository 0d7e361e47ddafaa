"""Pretrained image backbones shared by the models and metrics (torchvision ImageNet weights, offline-safe)."""
