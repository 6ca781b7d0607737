"""A scripted FHIR server for runner unit tests: serves source DocumentReferences at a version,
answers identifier searches with nothing, and records every transaction it is sent."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import requests

from plugin.fhir import FhirClient
from tests.support.fake_transport import Reply, ScriptedAdapter, session_with


@dataclass
class FakeEhr:
    base: str
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # "DocumentReference/7" -> resource
    transactions: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False  # answer every request with 503
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_source(self, resource_id: str, subject: str) -> None:
        self.sources[f"DocumentReference/{resource_id}"] = {
            "resourceType": "DocumentReference", "id": resource_id, "meta": {"versionId": "1"},
            "status": "current", "subject": {"reference": subject}}

    def client(self, **options: Any) -> FhirClient:
        return FhirClient(self.base, session=session_with(ScriptedAdapter(self._answer)), max_retries=0,
                          **options)

    def _answer(self, request: requests.PreparedRequest) -> Reply:
        if self.down:
            return Reply(503, b'{"resourceType": "OperationOutcome"}')
        path = (request.url or "").removeprefix(self.base).split("?")[0].strip("/")
        if request.method == "POST" and path == "":
            bundle = json.loads(request.body or b"{}")
            with self.lock:
                self.transactions.append(bundle)
                n = len(self.transactions)
            entries = [{"response": {"status": "201 Created", "location":
                        f"{self.base}/{e['resource']['resourceType']}/{n}{i}/_history/1"}}
                       for i, e in enumerate(bundle["entry"])]
            return Reply(200, json.dumps({"resourceType": "Bundle", "type": "transaction-response",
                                          "entry": entries}).encode())
        parts = path.split("/")
        if request.method == "GET" and len(parts) == 4 and parts[2] == "_history":
            source = self.sources.get("/".join(parts[:2]))
            if source is None:
                return Reply(404, b'{"resourceType": "OperationOutcome"}')
            return Reply(200, json.dumps(source).encode())
        if request.method == "GET" and len(parts) == 1:
            return Reply(200, b'{"resourceType": "Bundle", "type": "searchset", "entry": []}')
        return Reply(400, b'{"resourceType": "OperationOutcome"}')
