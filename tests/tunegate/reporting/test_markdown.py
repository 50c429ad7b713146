"""The run report as Markdown: the Prefect artifact and the model card carry the same evaluation, builds and
registry decision as the terminal report, and the card says how to load its own version."""

from __future__ import annotations

from tests.fixtures.finetune_result import finetune_result
from tests.fixtures.registry import drifted
from tunegate.reporting.markdown import finetune_markdown, model_card
from tunegate.reporting.report import finetune_summary


def test_the_model_card_is_the_report_titled_by_its_version_with_how_to_load_it(tmp_path):
    card = model_card(finetune_summary(finetune_result(tmp_path))).splitlines()
    assert card[0] == "# support-demo v1"
    start = card.index("| model | accuracy | loss |")
    assert card[start + 2 : start + 5] == [
        "| base | 0.250 | 2.000 |",
        "| baseline | 0.750 | n/a |",
        "| fine-tuned | 0.875 | 0.500 |",
    ]
    assert "Delta accuracy: **+0.625** (95% CI +0.250 .. +1.000)." in card
    builds = card.index("## Builds")
    assert card[builds + 3 : builds + 6] == [
        "| adapter | 0.875 | +0.000 | 40.0 | 52.5 | 9.4 | the adapter (above) |",
        "| merged | 0.875 | +0.000 | 25.0 | 30.0 | 9.0 | v2 (champion-merged) |",
        "| int8 | 0.750 | +0.125 | 20.0 | 24.0 | 5.3 | accuracy 0.750 vs adapter 0.875 (drop +0.125, beyond "
        "export.max_metric_drop 0.010) |",
    ]
    assert card[card.index("## Registry") + 1] == "support-demo v1 → **champion**: promoted: no champion yet"
    assert 'mlflow.set_tracking_uri("sqlite:///m.db")' in card
    assert (
        'model = mlflow.pyfunc.load_model("models:/support-demo/1")   # or "models:/support-demo@champion" while the '
        "alias is there" in card
    )


def test_the_artifact_shows_the_drift_when_measured_and_no_builds_table_without_exports(tmp_path):
    result = finetune_result(tmp_path)
    drift_measured = result.evaluated.result.model_copy(update={"drift": drifted(0.25, 0.75)})
    result = result.model_copy(
        update={
            "evaluated": result.evaluated.model_copy(update={"result": drift_measured}),
            "exports": result.exports.model_copy(update={"builds": []}),
        }
    )
    report = finetune_markdown(finetune_summary(result))
    assert report.startswith("# Fine-tuning run\n")
    drift = [line for line in report.splitlines() if line.startswith("Drift ")]
    assert drift == [
        "Drift from the base: 0.500 nats/token (95% CI 0.250 .. 0.750), first 8 tokens match 0.500 on 100 retention "
        "prompts."
    ]
    assert "## Builds" not in report
