"""datapath package."""
