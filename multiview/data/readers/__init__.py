"""One reader per dataset format: `read_<format>_scene(path, **options) -> Scene`."""
