"""A scrape that names its metrics (``?name[]=``) renders only those, and never asks for the
per-credential samples; an unnamed scrape renders everything."""

from __future__ import annotations

from collections.abc import Iterator

from vaultbridge.observability.metrics import CredentialSample, Metrics


def metrics_with_credentials(asked: list[int]) -> Metrics:
    metrics = Metrics()

    def samples() -> Iterator[CredentialSample]:
        asked.append(1)
        yield CredentialSample("ns", "a", 5.0, 1.7e9, True)

    metrics.track_credentials(samples)
    asked.clear()  # registration may describe the collector
    return metrics


def test_a_named_scrape_renders_only_what_it_names_and_skips_the_credentials() -> None:
    asked: list[int] = []
    metrics = metrics_with_credentials(asked)
    metrics.rotations.labels("promoted", "poll").inc()
    text = metrics.render(frozenset({"vaultbridge_rotations_total"})).decode()
    assert 'vaultbridge_rotations_total{result="promoted",trigger="poll"} 1.0' in text
    assert "vaultbridge_credential_age_seconds" not in text
    assert "vaultbridge_queue_depth" not in text
    assert asked == []


def test_an_unnamed_scrape_renders_every_metric_with_the_credentials() -> None:
    asked: list[int] = []
    metrics = metrics_with_credentials(asked)
    text = metrics.render().decode()
    assert 'vaultbridge_credential_age_seconds{name="a",namespace="ns"} 5.0' in text
    assert "vaultbridge_queue_depth" in text
    assert asked == [1]


def test_a_named_scrape_of_a_credential_metric_renders_it() -> None:
    metrics = metrics_with_credentials([])
    text = metrics.render(frozenset({"vaultbridge_credential_compliant"})).decode()
    assert 'vaultbridge_credential_compliant{name="a",namespace="ns"} 1.0' in text
    assert "vaultbridge_credential_age_seconds{" not in text
