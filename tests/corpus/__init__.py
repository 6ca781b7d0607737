"""Generated test corpora: inputs made by code in the tests, never committed as binaries."""
