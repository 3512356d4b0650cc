"""Long-running helpers a scenario starts inside nodes (DHCP client watcher, ...)."""
