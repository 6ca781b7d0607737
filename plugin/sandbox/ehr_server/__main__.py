"""`python -m plugin.sandbox.ehr_server --port 9090 --fhir-upstream http://127.0.0.1:8080/fhir
[--client-json '{"client_id": ..., "redirect_uris": [...], "launch_url": ...}']...`: the sandbox EHR as
its own process (the demo's EHR). Clients can also be registered later with POST /admin/clients."""

from __future__ import annotations

import argparse
import json

from werkzeug.serving import make_server

from plugin.sandbox.ehr_server.server import EhrConfig, client_from_json, create_ehr_app, ehr_of


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m plugin.sandbox.ehr_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--fhir-upstream", required=True, help="the HAPI sandbox's FHIR base URL")
    parser.add_argument("--standalone-patient", help="patient chosen for standalone launches")
    parser.add_argument("--client-json", action="append", default=[],
                        help="a client registration as JSON (repeatable)")
    args = parser.parse_args(argv)
    config = EhrConfig(base_url=f"http://{args.host}:{args.port}", fhir_upstream=args.fhir_upstream,
                       standalone_patient=args.standalone_patient)
    app = create_ehr_app(config)
    for text in args.client_json:
        ehr_of(app).register_client(client_from_json(json.loads(text)))
    print(f"sandbox EHR at {config.base_url} (FHIR {config.fhir_base})", flush=True)
    make_server(args.host, args.port, app, threaded=True).serve_forever()


if __name__ == "__main__":
    main()
