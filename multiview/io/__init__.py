"""File formats: images, PFM, MVSNet cam.txt/pair.txt, COLMAP binary models, CO3D depth PNGs."""
