"""A worker process that needs a SMART session's access token: `python -m tests.support.refresh_worker
CONFIG_JSON MODE`. CONFIG_JSON: database_url, secret_key, signing_key_path, ehr_iss, client_id,
session_id, fhir_base, lease_s, http_timeout_s, go_file.

MODE "refresh": prints "ready", waits for go_file to exist, then asks for the session's current
access token (refreshing it, as a job's FHIR client does) and prints {"token_sha": ...} or
{"error": ...}. MODE "hold": takes the session's refresh lease, prints "held" and sleeps (the
test kills it: a holder that crashed).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from plugin.config import Settings, SmartEhr
from smart_launch.runtime import build_runtime
from smart_launch.session import TokenSession


def main() -> None:
    config, mode = json.loads(sys.argv[1]), sys.argv[2]
    settings = Settings(database_url=config["database_url"], secret_key=config["secret_key"],
                        smart_signing_key_path=config["signing_key_path"],
                        smart_refresh_lease_s=config["lease_s"],
                        smart_http_timeout_s=config["http_timeout_s"],
                        smart_ehrs=(SmartEhr(name="sandbox", iss=config["ehr_iss"],
                                             client_id=config["client_id"]),))
    runtime = build_runtime(settings)
    if mode == "hold":
        holder = runtime.store.try_refresh_lease(config["session_id"], config["lease_s"])
        print("held" if holder else "not held", flush=True)
        time.sleep(3600)
        return
    tokens = TokenSession(runtime, config["session_id"], config["fhir_base"])
    print("ready", flush=True)
    while not Path(config["go_file"]).exists():
        time.sleep(0.005)
    try:
        token = tokens.current_access_token()
    except Exception as exc:  # the test reads what went wrong
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return
    print(json.dumps({"token_sha": hashlib.sha256(token.encode()).hexdigest()[:16]}), flush=True)


if __name__ == "__main__":
    main()
