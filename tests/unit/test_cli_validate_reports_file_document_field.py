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


def _bank_assistant() -> str:
    text = open("examples/bank-assistant.yaml").read()
    return text.split("\n---")[0]


def test_a_key_given_twice_is_an_error_not_the_last_one_silently(tmp_path):
    bad = tmp_path / "twice.yaml"
    bad.write_text(_bank_assistant().replace("spec:\n", "spec:\n  task: chat\n  task: text-generation\n", 1))
    result = runner.invoke(app, ["validate", "-f", str(bad), "-o", "json"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "key 'task' is given twice" in json.loads(result.stdout)["errors"][0]["message"]


def test_the_same_object_twice_is_an_error(tmp_path):
    bad = tmp_path / "dup.yaml"
    bad.write_text(_bank_assistant() + "\n---\n" + _bank_assistant())
    result = runner.invoke(app, ["validate", "-f", str(bad), "-o", "json"])
    assert result.exit_code == EXIT_BAD_INPUT
    (error,) = json.loads(result.stdout)["errors"]
    assert error["document"] == 1 and "already defined in" in error["message"] and "(document 0)" in error["message"]


def test_a_yaml_error_names_the_document_it_is_in(tmp_path):
    bad = tmp_path / "third.yaml"
    bad.write_text("a: 1\n---\nb: 2\n---\nc: [unclosed\n")
    result = runner.invoke(app, ["validate", "-f", str(bad), "-o", "json"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert json.loads(result.stdout)["errors"][0]["document"] == 2


def test_unreadable_input_and_no_manifests_are_bad_input_with_the_file_named(tmp_path):
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes(b"kind: Fine\xe9TuneJob\n")
    (tmp_path / "dir.yaml").mkdir()
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    for path, words in ((binary, "not UTF-8"), (tmp_path / "dir.yaml", "no FineTuneJob or ModelDeployment"),   # an empty directory
                        (empty, "no FineTuneJob or ModelDeployment")):
        result = runner.invoke(app, ["validate", "-f", str(path), "-o", "json"])
        assert result.exit_code == EXIT_BAD_INPUT, (path, result.output)
        error = json.loads(result.stdout)["errors"][0]
        assert str(path) in error["file"] and words in error["message"]


def test_a_namespace_the_api_server_would_refuse_is_refused_here(tmp_path):
    bad = tmp_path / "ns.yaml"
    bad.write_text(_bank_assistant().replace("metadata:\n", "metadata:\n  namespace: Team_A\n", 1))
    result = runner.invoke(app, ["validate", "-f", str(bad), "-o", "json"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert json.loads(result.stdout)["errors"][0]["field"] == "metadata.namespace"
