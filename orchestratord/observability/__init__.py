"""What an operator watches: the journal, Prometheus metrics and failure alerts."""
