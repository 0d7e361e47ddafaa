"""One writer per dataset layout; each exposes `write(out, num_scenes, num_views, height, width, seed, ...)`."""
