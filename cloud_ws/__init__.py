"""cloud-ws cloud_ws."""
