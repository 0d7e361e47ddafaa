"""JDACS (Xu et al., AAAI 2021): self-supervised multi-view stereo on MVSNet (Yao et al., ECCV 2018)."""
