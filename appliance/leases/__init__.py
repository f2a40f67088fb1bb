"""leases package."""
