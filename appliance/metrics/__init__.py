"""What an operator watches: a plain snapshot of the daemon's state, the Prometheus metric
families made from it, the alarms raised and cleared on it, the endpoint that serves the
metrics and the journal the log goes to (docs/metrics.md)."""
