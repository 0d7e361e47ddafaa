"""Procedural multi-view scenes with exact depth and masks, and writers for every dataset layout."""
