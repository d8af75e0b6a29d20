"""What makes the daemon a well-behaved system service: sd_notify and the watchdog, health, and Prometheus metrics.

Nothing here knows about stages or HTTP paths of DeepVA; the daemon feeds these objects and they answer systemd,
Prometheus and load balancers.
"""
