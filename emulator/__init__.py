"""cloud-ws emulator."""
