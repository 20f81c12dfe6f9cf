"""Archiver: the job ledger (single writer of job_events and job_states) and the asset archive."""

SERVICE = "archiver"
