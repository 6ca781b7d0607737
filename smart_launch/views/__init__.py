"""The SMART app's view-models: inputs and their status, results with evidence, evidence
rendering, previews for sessions that may not write, dictation."""
