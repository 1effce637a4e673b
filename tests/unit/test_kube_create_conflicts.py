"""``Kube.create`` tells "it exists already" from "nothing was created": only a 409 with reason
AlreadyExists is the former. (The fault-injection test found the bug this guards: a 409 Conflict on
the create of a job's ServiceAccount was taken for "exists", so its export pods were forbidden for
ever.) The answers are kube-apiserver's Status bodies, given to ``Kube`` without a server."""

from __future__ import annotations

import json

import pytest

from tuneline.controllers.kube import ApiError, Kube

SA = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "job-1-workload"}}


def _status(reason: str, message: str) -> str:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                       "reason": reason, "code": 409})


def kube_answering(*answers):
    """A Kube whose requests get ``answers`` in turn (an ApiError is raised, anything else returned)."""
    k = Kube(api_client=object(), retries=0)
    calls = []

    def request(method, url, body=None, **_):
        calls.append((method, url))
        answer = answers[len(calls) - 1]
        if isinstance(answer, ApiError):
            raise answer
        return answer
    k.request = request
    return k, calls


def test_create_returns_the_new_object_and_created():
    k, calls = kube_answering({"metadata": {"name": "job-1-workload", "uid": "u1"}})
    obj, created = k.create(SA, "ns")
    assert created and obj["metadata"]["uid"] == "u1"
    assert calls == [("POST", "/api/v1/namespaces/ns/serviceaccounts")]


def test_already_exists_is_not_an_error_and_not_created():
    k, _ = kube_answering(ApiError(409, "Conflict", _status("AlreadyExists",
                                                            'serviceaccounts "job-1-workload" already exists')))
    assert k.create(SA, "ns") == (None, False)


def test_a_conflict_that_created_nothing_is_raised_for_the_caller_to_decide_again():
    k, _ = kube_answering(ApiError(409, "Conflict", _status(
        "Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes "
                    "to the latest version and try again")))
    with pytest.raises(ApiError) as err:
        k.create(SA, "ns")
    assert err.value.conflict and not err.value.already_exists
