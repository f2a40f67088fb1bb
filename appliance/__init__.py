"""dhcp-hotbackup: a DHCPv4 server pair with VRRP, session replication and an XDP datapath."""

__version__ = "0.1.0"
