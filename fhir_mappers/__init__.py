"""Pure functions between FHIR resources and pipeline inputs/results (nothing here yet: the
write-back issue fills it)."""
