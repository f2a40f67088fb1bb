"""vrrp package."""
