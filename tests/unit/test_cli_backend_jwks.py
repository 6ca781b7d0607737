"""`chartlight backend-jwks`: the public JWK Set to register a backend-services key with its EHR."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import ECKey

from plugin.cli import cli


def test_backend_jwks_prints_each_public_key_with_the_kid_chartlight_sends(tmp_path: Path) -> None:
    key = tmp_path / "ehr-b.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384",
                    "-out", str(key)], check=True, capture_output=True)
    config = tmp_path / "chartlight.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path}/jobs.db"\n[[backend_services]]\nname = "ehr-b"\n'
                      f'fhir_server = "https://ehr-b.example.org/fhir"\nclient_id = "svc"\n'
                      f'private_key_path = "{key}"\nscopes = "system/Patient.rs"\n')
    result = CliRunner().invoke(cli, ["--config", str(config), "backend-jwks", "--name", "ehr-b"])
    assert result.exit_code == 0, result.output
    [jwk] = json.loads(result.output)["keys"]
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    public = ECKey.import_key(private.public_key().public_bytes(  # joserfc's reading, not ours
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert {k: jwk[k] for k in ("kty", "crv", "x", "y")} == public.as_dict(private=False)
    assert jwk["kid"] == public.thumbprint() and jwk["alg"] == "ES384" and "d" not in jwk
    everything = CliRunner().invoke(cli, ["--config", str(config), "backend-jwks"])
    assert list(json.loads(everything.output)) == ["ehr-b"]
    missing = CliRunner().invoke(cli, ["--config", str(config), "backend-jwks", "--name", "ehr-z"])
    assert missing.exit_code != 0 and "no backend_services entry 'ehr-z'" in missing.output
