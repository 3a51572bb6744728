"""The inspector: read-only views of what every replica can see — the live overview (runs,
replicas, graphs, errors), a run's superstep timeline, its trace and the rate limits.

Each figure comes from a shared source (the database, the replicas' heartbeat rows, the
limiter's describe calls, Jaeger's query API), never from one process's memory alone, so any
replica answers for all of them. The doors (server/http/inspector.py, server/api/inspector.py)
only translate what this package returns.
"""
