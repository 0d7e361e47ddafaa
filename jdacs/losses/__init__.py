"""JDACS's losses: photometric consistency, smoothness, co-segmentation (VGG19 + NMF), augmentation, supervised."""
