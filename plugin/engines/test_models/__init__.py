"""Tiny random-weight MedGemma and MedASR built from the real config classes: the tests' models,
and the demo's when the real weights are absent (their output is marked as test output)."""

from plugin.engines.test_models.store import (
    MARKER,
    TEST_OUTPUT,
    StoredMedAsr,
    StoredTestModels,
    ensure_test_models,
    is_test_model,
    medgemma_engine,
    sandbox_only,
    why_not_sandbox,
)

__all__ = ["MARKER", "TEST_OUTPUT", "StoredMedAsr", "StoredTestModels", "ensure_test_models", "is_test_model",
           "medgemma_engine", "sandbox_only", "why_not_sandbox"]
