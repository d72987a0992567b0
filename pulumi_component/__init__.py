"""cloud-ws pulumi_component."""
