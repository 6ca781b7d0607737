"""`chartlight serve` with a broker says which interactive features would load a model in the
web tier (docs/deploy.md "Models in the web tier")."""

from __future__ import annotations

from plugin.config import Settings
from plugin.wsgi import models_in_the_web_tier

BROKER = "redis://127.0.0.1:6399/0"


def test_without_a_broker_nothing_is_said() -> None:
    assert models_in_the_web_tier(Settings()) == []


def test_each_feature_that_would_load_a_model_is_named_and_its_setting_silences_it() -> None:
    both = models_in_the_web_tier(Settings(job_broker_url=BROKER))
    assert [w.split(" ")[0] for w in both] == ["live", "ask"]
    assert models_in_the_web_tier(Settings(job_broker_url=BROKER, speech_live=False,
                                           medgemma_engine="remote",
                                           medgemma_remote_url="https://vllm.example/v1")) == []
