"""Bundled data: the captured /object_info reply."""
