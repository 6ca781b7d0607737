"""The CDS Hooks service (Flask blueprint). Not built yet: see the CDS Hooks issue."""
