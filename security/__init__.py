"""Who may call stepstream's services and what they may send: credentials, the gRPC auth
interceptor, malformed requests, and TLS.

Shared by the graph server and the rate-limiter sidecar; each declares its own
table of methods and the roles they need (server/api/auth.py, ratelimiter/auth.py).
"""
