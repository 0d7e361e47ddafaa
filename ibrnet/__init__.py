"""IBRNet (Wang et al., CVPR 2021): generalizable image-based rendering with a ray transformer."""
