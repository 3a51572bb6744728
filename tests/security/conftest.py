"""Tenants, keys and certificates for the security tests, and a server that requires them.

Two tenants (alice, bob) with API keys and the writer role, a read-only key of
alice's, JWTs signed by a key in the server's JWKS (and by one that is not),
and development certificates from stepstream.security.devcerts.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from stepstream.security.credentials import hash_api_key, new_api_key
from stepstream.security.devcerts import make_dev_certs
from tests.rpc import Api
from tests.support import ServerProcess

ISSUER = "https://issuer.stepstream.test"
AUDIENCE = "stepstream"
KID = "test-key-1"


@dataclasses.dataclass(frozen=True)
class Tenants:
    """API keys by name, the principals file declaring them, and the JWT signing keys."""

    keys: dict[str, str]
    principals_file: pathlib.Path
    jwks_file: pathlib.Path
    signing_key: ec.EllipticCurvePrivateKey
    # Same kid, not in the key set: what a forger would sign with.
    rogue_key: ec.EllipticCurvePrivateKey

    def token(
        self,
        owner: str,
        roles: Any = ("writer",),
        *,
        expires_in: float = 300,
        key: ec.EllipticCurvePrivateKey | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        scope = roles if isinstance(roles, str) else list(roles)
        body = {"sub": owner, "roles": scope, "iss": ISSUER, "aud": AUDIENCE, "iat": now}
        body["exp"] = now + int(expires_in)
        body.update(claims)
        return jwt.encode(body, key or self.signing_key, algorithm="ES256", headers={"kid": KID})


PRINCIPALS = {
    "alice": ("alice", ["writer"]),
    "bob": ("bob", ["writer"]),
    "alice-reader": ("alice", ["reader"]),
    "limiter": ("internal", ["limiter"]),
    "no-roles": ("carol", []),
}


@pytest.fixture(scope="session")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Tenants:
    folder = tmp_path_factory.mktemp("auth")
    keys = {name: new_api_key() for name in PRINCIPALS}
    lines = []
    for name, (owner, roles) in PRINCIPALS.items():
        lines += [
            "[[api_keys]]",
            f'sha256 = "{hash_api_key(keys[name])}"',
            f'owner = "{owner}"',
            f"roles = {json.dumps(roles)}",
            "",
        ]
    # The server's client certificate (devcerts' "stepstream-server") may take tokens.
    lines += ["[[certificates]]", 'common_name = "stepstream-server"', 'owner = "internal"']
    lines += ['roles = ["limiter"]', ""]
    principals = folder / "principals.toml"
    principals.write_text("\n".join(lines))
    signing = ec.generate_private_key(ec.SECP256R1())
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(signing.public_key(), as_dict=True)
    jwk.update(kid=KID, alg="ES256", use="sig")
    jwks = folder / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    return Tenants(keys, principals, jwks, signing, ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return make_dev_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def other_ca_certs(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Certificates of an unrelated CA: a server must refuse its client certificates."""
    return make_dev_certs(tmp_path_factory.mktemp("other-certs"))


def auth_args(tenants: Tenants) -> list[str]:
    return [
        "--auth-file",
        str(tenants.principals_file),
        "--jwt-keys",
        str(tenants.jwks_file),
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
    ]


@pytest.fixture(scope="session")
def secured_server(tenants: Tenants, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server that requires credentials (plaintext, loopback)."""
    db = tmp_path_factory.mktemp("secured") / "db.sqlite"
    server = ServerProcess(f"sqlite+aiosqlite:///{db}", *auth_args(tenants))
    address = server.start()
    yield address
    server.stop()


def api_key_api(address: str, key: str, **kw: Any) -> Api:
    return Api(address, metadata=(("x-api-key", key),), **kw)


def bearer_api(address: str, token: str, **kw: Any) -> Api:
    return Api(address, metadata=(("authorization", f"Bearer {token}"),), **kw)


@pytest.fixture
def api(server_address: str) -> Iterator[Api]:
    """A client of the suite's shared server (authentication off: the embedded default)."""
    client = Api(server_address)
    yield client
    client.close()
