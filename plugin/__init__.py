"""cloud-ws plugin."""
