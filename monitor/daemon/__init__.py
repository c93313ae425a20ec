"""The running daemon: wiring, the ping scheduler, the domain tracker, the
recovery step, metrics and the status and metrics servers."""
