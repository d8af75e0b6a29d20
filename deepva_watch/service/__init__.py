"""What makes the daemon a well-behaved system service: sd_notify and the watchdog, health, Prometheus metrics, and
the status page for people (with its JSON twin).

Nothing here knows about stages or HTTP paths of DeepVA; the daemon feeds these objects and they answer systemd,
Prometheus, load balancers and operators.
"""
