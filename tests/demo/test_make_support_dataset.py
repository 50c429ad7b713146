"""The many-label demo variant: seeded, 42 intents, every row's label in the config's label set."""

import sys

import pandas as pd

from tests.conftest import REPO
from tunegate.config.loading import load_config

sys.path.insert(0, str(REPO / "demo"))
from make_support_dataset import fine_grained_labels, write_fine_grained  # noqa: E402


def test_the_fine_grained_variant_is_seeded_and_uses_the_configs_42_labels(tmp_path):
    first = write_fine_grained(tmp_path / "a", rows=2000)
    again = write_fine_grained(tmp_path / "b", rows=2000)
    assert first.read_bytes() == again.read_bytes()
    rows = pd.read_csv(first)
    assert len(rows) == 2000 and rows["text"].is_unique
    config = load_config(REPO / "deployments" / "support_fine.yaml")
    assert config.task.labels == fine_grained_labels() and len(config.task.labels) == 42
    tiny = load_config(REPO / "deployments" / "support_fine_tiny.yaml")
    assert (tiny.task, tiny.data) == (config.task, config.data)
    assert set(rows["category"]) == set(config.task.labels)
    # Weights 1 / (1 + 0.05 i): expected 4.35% of rows for the first label, 1.43% for the last; 2000 rows add noise.
    shares = rows["category"].value_counts(normalize=True)
    first, last = shares[config.task.labels[0]], shares[config.task.labels[-1]]
    assert 0.03 < first < 0.06 and 0.005 < last < 0.03 and first > last
