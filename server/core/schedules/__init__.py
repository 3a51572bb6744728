"""Crons (scheduled runs) and webhooks (a signed POST when a run ends), across replicas.

records.py: the domain values; cronspec.py: due times from an expression or an
interval; crons.py: create/list/update and the scheduler loop that claims due
crons in the database; destinations.py: which webhook URLs may be reached;
webhooks.py: deliveries stored with the run's end and sent by whichever replica
claims them; signing.py: Standard Webhooks signatures; ports.py: what the core
needs of storage (server/storage/schedules.py implements it).
"""
