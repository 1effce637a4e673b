from tuneline import status as st
from tuneline.api import DeploymentPhase, Phase


def test_set_condition_is_a_no_op_when_nothing_changed():
    s = {}
    assert st.set_condition(s, st.SUCCEEDED, "Unknown", "Initializing", "waiting", 1)
    first = dict(s["conditions"][0])
    assert not st.set_condition(s, st.SUCCEEDED, "Unknown", "Initializing", "waiting", 1)
    assert s["conditions"][0] == first
    assert s["observedGeneration"] == 1


def test_transition_time_moves_only_when_status_flips():
    s = {}
    st.set_condition(s, st.PROGRESSING, "True", "Training", "epoch 1", 1)
    s["conditions"][0]["lastTransitionTime"] = "2000-01-01T00:00:00Z"
    assert st.set_condition(s, st.PROGRESSING, "True", "Training", "epoch 2", 1)
    assert s["conditions"][0]["lastTransitionTime"] == "2000-01-01T00:00:00Z"
    st.set_condition(s, st.PROGRESSING, "False", "Completed", "done", 2)
    assert s["conditions"][0]["lastTransitionTime"] != "2000-01-01T00:00:00Z"
    assert s["observedGeneration"] == 2 and s["conditions"][0]["observedGeneration"] == 2


def test_initial_conditions_are_unknown():
    s = {}
    assert st.initial_conditions(s, st.FINETUNEJOB_CONDITIONS, 3)
    assert {c["status"] for c in s["conditions"]} == {"Unknown"}
    assert not st.initial_conditions(s, st.FINETUNEJOB_CONDITIONS, 3)


def test_mark_failed_names_reason_and_is_terminal():
    s = {}
    st.mark_failed(s, st.FailureReason.EVALUATION_GATE_FAILED, "eval_loss 2.7 > max 2.5", 1)
    assert Phase(s["phase"]).is_terminal()
    assert st.get_condition(s, st.FAILED)["reason"] == "EvaluationGateFailed"
    assert st.get_condition(s, st.SUCCEEDED)["status"] == "False"


def test_phase_predicates():
    assert not Phase.TRAINING.is_terminal() and Phase.SUCCEEDED.is_terminal()
    assert DeploymentPhase.FAILED.is_terminal() and not DeploymentPhase.PROGRESSING.is_terminal()
