"""The SMART on FHIR app (Flask blueprint). Not built yet: see the SMART app issue."""
