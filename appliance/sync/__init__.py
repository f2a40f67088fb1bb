"""sync: session replication between the two devices (docs/sync-protocol.md).

Pure: frames (wire format, keys, MACs), session (the state machine of one connection),
merge (split-brain rules, pool split), changelog (what the daemon provides), backlog
(replies waiting for the peer's ACK). Adapter: transport (asyncio TCP, SyncLink).
"""
