"""Python client for cloud-ws."""
