import json

from typer.testing import CliRunner

from tuneline.cli import EXIT_BAD_INPUT, app

runner = CliRunner()


def test_examples_are_valid():
    result = runner.invoke(app, ["validate", "-f", "examples", "-o", "json"])
    assert result.exit_code == 0, result.output
    kinds = {(r["kind"], r["name"]) for r in json.loads(result.stdout)["resources"]}
    assert ("FineTuneJob", "bank-assistant") in kinds and ("ModelDeployment", "bank-intents") in kinds


def test_schema_error_names_file_document_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(open("examples/intent-classifier.yaml").read().replace("learningRate: 5.0e-5", "learningRate: -5"))
    result = runner.invoke(app, ["validate", "-f", str(bad), "-o", "json"])
    assert result.exit_code == EXIT_BAD_INPUT
    errors = json.loads(result.stdout)["errors"]
    assert errors == [{"file": str(bad), "document": 0, "field": "spec.hyperparameters.learningRate",
                       "message": "Input should be greater than 0"}]


def test_missing_file_is_bad_input(tmp_path):
    result = runner.invoke(app, ["validate", "-f", str(tmp_path / "nope.yaml")])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "file not found" in result.output
