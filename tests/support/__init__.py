"""Test support: loopback servers and fakes used by the tests (never by the product)."""
