"""`python -m plugin.sandbox.ehr_server --port 9090 --fhir-upstream http://127.0.0.1:8080/fhir
[--client-json '{"client_id": ..., "redirect_uris": [...], "launch_url": ...}']... [--cds-base URL]
[mode flags]`: the sandbox EHR as its own process (the demo's EHR), optionally in the modes of
EhrConfig. Clients can also be registered later with POST /admin/clients."""

from __future__ import annotations

import argparse
import json

from werkzeug.serving import make_server

from plugin.sandbox.ehr_server.server import (
    ID_TOKEN_ALGORITHMS,
    EhrConfig,
    client_from_json,
    create_ehr_app,
    ehr_of,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m plugin.sandbox.ehr_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--fhir-upstream", required=True, help="the HAPI sandbox's FHIR base URL")
    parser.add_argument("--standalone-patient", help="patient chosen for standalone launches")
    parser.add_argument("--client-json", action="append", default=[],
                        help="a client registration as JSON (repeatable)")
    parser.add_argument("--id-token-alg", default="RS256", choices=ID_TOKEN_ALGORITHMS)
    parser.add_argument("--id-token-without-kid", action="store_true",
                        help="sign id_tokens without kid (one key in the JWK Set), as smart-launcher-v2 does")
    parser.add_argument("--serve-style", action="store_true", help="send smart_style_url (and serve it)")
    parser.add_argument("--banner", action="store_true", help="need_patient_banner on EHR launches too")
    parser.add_argument("--tenant", action="append", default=[],
                        help="another FHIR base at /t/<tenant>/fhir (repeatable)")
    parser.add_argument("--cds-base", help="call this CDS service base's patient-view services on the "
                        "EHR page (discovery at <cds base>/cds-services) and show the cards")
    args = parser.parse_args(argv)
    config = EhrConfig(base_url=f"http://{args.host}:{args.port}", fhir_upstream=args.fhir_upstream,
                       standalone_patient=args.standalone_patient, id_token_alg=args.id_token_alg,
                       id_token_kid=not args.id_token_without_kid, serve_style=args.serve_style,
                       banner_on_ehr_launch=args.banner, tenants=tuple(args.tenant),
                       cds_base=args.cds_base)
    app = create_ehr_app(config)
    for text in args.client_json:
        ehr_of(app).register_client(client_from_json(json.loads(text)))
    print(f"sandbox EHR at {config.base_url} (FHIR {config.fhir_base})", flush=True)
    make_server(args.host, args.port, app, threaded=True).serve_forever()


if __name__ == "__main__":
    main()
