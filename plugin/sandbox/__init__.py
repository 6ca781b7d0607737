"""Local sandbox servers (HAPI FHIR) and the synthetic patient seeded into them."""
