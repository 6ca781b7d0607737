"""SMART app sessions from two EHRs registered in one chartlight app, each EHR (a sandbox EHR:
authorization server + FHIR proxy) in front of its own real HAPI server, with the same patient id
and document ids on both: each session's analyses are jobs of its own server, run with its own
clinician's token (never sent to the other EHR), written to its own server, and shown only on its
own pages. A visit of the app's inputs page re-queues this patient's transiently failed jobs on
this server only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from plugin.app import job_store_of
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobScope, JobState, JobStore
from smart_launch.runtime import runtime_of
from tests.integration.test_jobs_multi_ehr import EXPECTED, NOTHING, put_patient_and_document, results
from tests.integration.test_smart_jobs_sandbox import _launched, _use_fixed_documents, _wait
from tests.support.smart_stack import SmartStack, smart_stack

pytestmark = pytest.mark.sandbox


def _inputs(stack: SmartStack, browser: requests.Session) -> dict[str, Any]:
    answer = browser.get(f"{stack.app_base}/smart/app/status.json", timeout=60)
    answer.raise_for_status()
    return answer.json()["inputs"]  # type: ignore[no-any-return]


def _analyse(stack: SmartStack, browser: requests.Session, csrf: str, source: str) -> Any:
    return browser.post(f"{stack.app_base}/smart/app/analyze", json={"source": source},
                        headers={"X-CSRF-Token": csrf}, timeout=60).json()


def _state_of(stack: SmartStack, browser: requests.Session, key: str) -> Callable[[], str]:
    return lambda: _inputs(stack, browser).get(key, {}).get("state", "")


def test_app_sessions_from_two_ehrs_with_colliding_ids_each_analyse_their_own_server(
        sandbox_url: str, sandbox2_url: str, run_id: str, tmp_path: Path) -> None:
    hapi_a, hapi_b = FhirClient(sandbox_url, timeout_s=120), FhirClient(sandbox2_url, timeout_s=120)
    patient, other, doc = f"ms{run_id[:10]}-1", f"ms{run_id[:10]}-2", f"ms{run_id[:10]}-3"
    put_patient_and_document(hapi_a, (patient, other), doc, owner=patient)
    put_patient_and_document(hapi_b, (patient, other), doc, owner=patient)
    key = f"documents:DocumentReference/{doc}"
    with smart_stack(sandbox_url, tmp_path, more_upstreams=(sandbox2_url,)) as a:
        [b] = a.others
        assert a.fhir_base != b.fhir_base and b.fhir_upstream == sandbox2_url
        _use_fixed_documents(a)
        store = job_store_of(a.app)
        browser_a, session_a, csrf_a = _launched(a, patient)
        browser_b, session_b, csrf_b = _launched(b, patient)
        sessions = runtime_of(a.app).store
        token_a = sessions.get_session(session_a).access_token  # type: ignore[union-attr]
        token_b = sessions.get_session(session_b).access_token  # type: ignore[union-attr]

        # The clinician on EHR A analyses first; B's pages know nothing of A's finished job,
        # though its patient, document id and version are the same.
        assert _analyse(a, browser_a, csrf_a, f"DocumentReference/{doc}") == {
            "ok": True, "started": [key], "written": True}
        _wait(lambda: _state_of(a, browser_a, key)() in ("done", "failed"))
        assert _inputs(a, browser_a)[key]["state"] == "done", _inputs(a, browser_a)[key]
        assert key not in _inputs(b, browser_b)
        home_b = browser_b.get(f"{b.app_base}/smart/app", timeout=60).text
        assert f'<tr data-input="{key}" data-state="not analysed"' in home_b

        # The clinician on EHR B analyses: a job of B's server, run with B's token.
        assert _analyse(b, browser_b, csrf_b, "all") == {"ok": True, "started": [key], "written": True}
        servers = [j.fhir_base_url for j in store.list(subject=f"Patient/{patient}")]
        assert servers == [b.fhir_base, a.fhir_base]  # not A's finished job of the same ids
        _wait(lambda: _state_of(b, browser_b, key)() in ("done", "failed"))
        assert _inputs(b, browser_b)[key]["state"] == "done", _inputs(b, browser_b)[key]

        [job_a] = store.list(fhir_base_url=a.fhir_base)
        [job_b] = store.list(fhir_base_url=b.fhir_base)
        assert job_a.id != job_b.id
        assert (job_a.session_id, job_b.session_id) == (session_a, session_b)
        assert (job_a.state, job_b.state) == (JobState.SUCCEEDED, JobState.SUCCEEDED)
        assert job_a.subject == job_b.subject == f"Patient/{patient}"
        # Each session's pages show its own server's analysis only.
        for stack, browser in ((a, browser_a), (b, browser_b)):
            home = browser.get(f"{stack.app_base}/smart/app", timeout=60).text
            assert f'<tr data-input="{key}" data-state="done"' in home

        # Each EHR's proxy saw its own clinician's token, never the other EHR's.
        assert token_a in a.bearers and token_b in b.bearers
        assert token_a not in b.bearers and token_b not in a.bearers
        assert not set(a.bearers) & set(b.bearers)

    for hapi, job in ((hapi_a, job_a), (hapi_b, job_b)):
        assert results(hapi, f"Patient/{patient}") == EXPECTED
        assert results(hapi, f"Patient/{other}") == NOTHING
        provenance = hapi.read("Provenance", job.summary["provenance"].split("/")[1])
        assert provenance["agent"][0]["onBehalfOf"]["reference"] == a.user
        targets = [t["reference"] for t in provenance["target"]]
        assert len(targets) == 5 and {hapi.read(*t.split("/")[:2])["subject"]["reference"]
                                      for t in targets} == {f"Patient/{patient}"}


def _failed(store: JobStore, job: Job, *, transient: bool) -> None:
    claimed = store.claim_next(JobScope(pipelines=frozenset({job.pipeline}), subject=job.subject,
                                        fhir_base_url=job.fhir_base_url))
    assert claimed is not None and claimed.id == job.id
    store.fail(claimed, "the EHR did not answer" if transient else "not a readable document",
               transient=transient)


def test_a_visit_of_the_inputs_page_requeues_this_patients_transient_failures_on_its_server_only(
        sandbox_url: str, sandbox2_url: str, run_id: str, tmp_path: Path) -> None:
    hapi_a, hapi_b = FhirClient(sandbox_url, timeout_s=120), FhirClient(sandbox2_url, timeout_s=120)
    patient, other, doc = f"mv{run_id[:10]}-1", f"mv{run_id[:10]}-2", f"mv{run_id[:10]}-3"
    put_patient_and_document(hapi_a, (patient, other), doc, owner=patient)
    put_patient_and_document(hapi_b, (patient, other), doc, owner=patient)
    key = f"documents:DocumentReference/{doc}"
    with smart_stack(sandbox_url, tmp_path, more_upstreams=(sandbox2_url,)) as a:
        [b] = a.others
        _use_fixed_documents(a)
        a.app.extensions["chartlight.runner"].stop()  # nothing runs: the states stay as set here
        store = job_store_of(a.app)
        source = {"pipeline": "documents", "source_type": "DocumentReference", "source_id": doc,
                  "source_version": "1", "subject": f"Patient/{patient}"}
        on_a = store.submit(**source, fhir_base_url=a.fhir_base)
        on_b = store.submit(**source, fhir_base_url=b.fhir_base)
        lasting = store.submit(**{**source, "source_id": f"{doc}-x"}, fhir_base_url=a.fhir_base)
        other_patient = store.submit(**{**source, "source_id": f"{doc}-y", "subject": f"Patient/{other}"},
                                     fhir_base_url=a.fhir_base)
        for job in (on_a, on_b, other_patient):
            _failed(store, job, transient=True)
        _failed(store, lasting, transient=False)

        browser_a, _, _ = _launched(a, patient)  # the launch alone does not visit the page
        assert store.get(on_a.id).state is JobState.FAILED
        home = browser_a.get(f"{a.app_base}/smart/app", timeout=60)
        assert home.status_code == 200
        assert f'<tr data-input="{key}" data-state="queued"' in home.text
        assert store.get(on_a.id).state is JobState.QUEUED and store.get(on_a.id).error == ""
        # Not a lasting failure, not another patient's job, not the same job on the other EHR.
        assert store.get(lasting.id).state is JobState.FAILED
        assert store.get(other_patient.id).state is JobState.FAILED
        assert store.get(on_b.id).state is JobState.FAILED

        browser_b, _, _ = _launched(b, patient)
        browser_b.get(f"{b.app_base}/smart/app", timeout=60).raise_for_status()
        assert store.get(on_b.id).state is JobState.QUEUED
        assert store.get(other_patient.id).state is JobState.FAILED
