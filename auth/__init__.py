"""Who may call stepstream's services: credentials, the gRPC auth interceptor, and TLS.

Shared by the graph server and the rate-limiter sidecar; each declares its own
table of methods and the roles they need (server/api/auth.py, ratelimiter/auth.py).
"""
