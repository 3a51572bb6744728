"""Credentials a caller may present, and the principal (owner + roles) each resolves to.

- API keys, sent as `x-api-key`. The principals file keeps only their SHA-256,
  so it is not itself a secret.
- JWT bearer tokens, sent as `authorization: Bearer <token>`, verified with PyJWT
  against a configured key set (a JWKS file or one PEM public key). The
  algorithm comes from the key, never from the token, and `exp` is required.
- Client certificates, when the transport verified one (mTLS): its common name
  maps to a principal in the same file.

The principals file (TOML or JSON):

    [[api_keys]]
    sha256 = "9f86d0..."          # hashlib.sha256(key.encode()).hexdigest()
    owner = "acme"
    roles = ["writer"]

    [[certificates]]
    common_name = "stepstream-server"
    owner = "internal"
    roles = ["limiter"]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import secrets
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jwt

API_KEY_HEADER = "x-api-key"
AUTHORIZATION_HEADER = "authorization"
# Claims that may name an owner or roles are short strings; anything longer is refused.
_MAX_CLAIM_CHARS = 128


class AuthError(Exception):
    """The caller presented no usable credentials (UNAUTHENTICATED)."""


class ConfigError(ValueError):
    """A principals file or key set that cannot be used, with where and why."""


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who a request acts for: the tenant that owns what it touches, and its roles."""

    owner: str
    roles: frozenset[str]
    # How it was established: "api-key", "jwt", "certificate" or "anonymous".
    via: str

    def has_any(self, roles: Iterable[str]) -> bool:
        return not self.roles.isdisjoint(roles)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    """A fresh random API key (256 bits, URL-safe)."""
    return "sk_" + secrets.token_urlsafe(32)


def _principal(entry: Mapping[str, Any], where: str, via: str) -> Principal:
    owner = entry.get("owner")
    roles = entry.get("roles", [])
    if not isinstance(owner, str) or not owner or len(owner) > _MAX_CLAIM_CHARS:
        raise ConfigError(f"{where}.owner: must be a non-empty string of at most {_MAX_CLAIM_CHARS} chars")
    if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
        raise ConfigError(f"{where}.roles: must be a list of role names")
    return Principal(owner, frozenset(roles), via)


@dataclasses.dataclass(frozen=True)
class PrincipalTable:
    """API keys (by SHA-256) and certificate common names, each mapped to a principal."""

    by_key_hash: Mapping[str, Principal] = dataclasses.field(default_factory=dict)
    by_common_name: Mapping[str, Principal] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path: str | pathlib.Path) -> PrincipalTable:
        file = pathlib.Path(path)
        try:
            text = file.read_text()
            data: Any = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            kind = "JSON" if file.suffix == ".json" else "TOML"
            raise ConfigError(f"{file}: not valid {kind}: {exc}") from None
        return cls.from_mapping(data, str(file))

    @classmethod
    def from_mapping(cls, data: Any, source: str = "<principals>") -> PrincipalTable:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a table")
        unknown = set(data) - {"api_keys", "certificates"}
        if unknown:
            raise ConfigError(f"{source}: {sorted(unknown)[0]}: unknown section (api_keys, certificates)")
        keys: dict[str, Principal] = {}
        for i, entry in enumerate(_entries(data, "api_keys", source)):
            where = f"{source}: api_keys[{i}]"
            digest = entry.get("sha256")
            if not isinstance(digest, str) or len(digest) != 64:
                raise ConfigError(f"{where}.sha256: must be the 64 hex digits of the key's SHA-256")
            keys[digest.lower()] = _principal(entry, where, "api-key")
        names: dict[str, Principal] = {}
        for i, entry in enumerate(_entries(data, "certificates", source)):
            where = f"{source}: certificates[{i}]"
            name = entry.get("common_name")
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{where}.common_name: must be a non-empty string")
            names[name] = _principal(entry, where, "certificate")
        return cls(keys, names)


def _entries(data: Mapping[str, Any], section: str, source: str) -> list[Mapping[str, Any]]:
    entries = data.get(section, [])
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigError(f"{source}: {section}: must be a list of tables")
    return entries


@dataclasses.dataclass(frozen=True)
class JwtSettings:
    # A JWKS file ({"keys": [...]}) or one PEM public key; tokens signed by anything else are refused.
    keys_file: str
    issuer: str = ""
    audience: str = ""
    # The claim naming the owner (tenant), and the one listing roles (a list, or a
    # space-separated string like OAuth's "scope").
    owner_claim: str = "sub"
    roles_claim: str = "roles"
    leeway_seconds: float = 30.0


class JwtVerifier:
    def __init__(self, settings: JwtSettings) -> None:
        self.settings = settings
        self._keys = _load_key_set(settings.keys_file)

    def _key_for(self, token: str) -> jwt.PyJWK:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed bearer token: {exc}") from None
        kid = header.get("kid")
        if kid is not None:
            key = self._keys.get(str(kid))
            if key is None:
                raise AuthError("bearer token signed with an unknown key (kid)")
            return key
        if len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise AuthError("bearer token has no kid and the key set holds several keys")

    def verify(self, token: str) -> Principal:
        key = self._key_for(token)
        s = self.settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[key.algorithm_name],
                audience=s.audience or None,
                issuer=s.issuer or None,
                leeway=s.leeway_seconds,
                options={"require": ["exp"], "verify_aud": bool(s.audience)},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("bearer token has expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"bearer token refused: {exc}") from None
        owner = claims.get(s.owner_claim)
        if not isinstance(owner, str) or not owner or len(owner) > _MAX_CLAIM_CHARS:
            raise AuthError(f"bearer token has no usable {s.owner_claim!r} claim")
        raw_roles = claims.get(s.roles_claim, [])
        roles = raw_roles.split() if isinstance(raw_roles, str) else raw_roles
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthError(f"bearer token's {s.roles_claim!r} claim is not a list of roles")
        return Principal(owner, frozenset(roles), "jwt")


def _load_key_set(path: str) -> dict[str, jwt.PyJWK]:
    """Keys by kid ("" for a lone key without one)."""
    file = pathlib.Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        if text.lstrip().startswith("-----BEGIN"):
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            public = load_pem_public_key(text.encode())
            return {"": jwt.PyJWK.from_dict(json.loads(_public_jwk(public)))}
        key_set = jwt.PyJWKSet.from_json(text)
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise ConfigError(f"{file}: not a JWKS or PEM public key: {exc}") from None
    keys = {str(k.key_id or ""): k for k in key_set.keys}
    if not keys:
        raise ConfigError(f"{file}: the key set is empty")
    return keys


def _public_jwk(public: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(public, rsa.RSAPublicKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
        jwk["alg"] = "RS256"
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
        jwk["alg"] = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[jwk["crv"]]
    else:
        raise ValueError(f"unsupported public key type {type(public).__name__}")
    return json.dumps(jwk)


class Authenticator:
    """Resolves a call's metadata (and verified peer certificate) to a principal."""

    def __init__(self, principals: PrincipalTable | None = None, jwt_verifier: JwtVerifier | None = None):
        self.principals = principals or PrincipalTable()
        self.jwt = jwt_verifier

    def authenticate(
        self, metadata: Sequence[tuple[str, Any]], common_names: Sequence[str] = ()
    ) -> Principal:
        api_key = bearer = None
        for name, value in metadata:
            if name == API_KEY_HEADER:
                api_key = value if isinstance(value, str) else None
            elif name == AUTHORIZATION_HEADER and isinstance(value, str):
                scheme, _, rest = value.partition(" ")
                if scheme.lower() != "bearer" or not rest.strip():
                    raise AuthError("authorization must be 'Bearer <token>'")
                bearer = rest.strip()
        if api_key is not None:
            principal = self.principals.by_key_hash.get(hash_api_key(api_key))
            if principal is None:
                raise AuthError("unknown API key")
            return principal
        if bearer is not None:
            if self.jwt is None:
                raise AuthError("bearer tokens are not accepted here (no JWT key set configured)")
            return self.jwt.verify(bearer)
        for name in common_names:
            principal = self.principals.by_common_name.get(name)
            if principal is not None:
                return principal
        raise AuthError(f"no credentials: send '{API_KEY_HEADER}' or 'authorization: Bearer <token>'")


def build_authenticator(
    auth_file: str | None,
    jwt_keys_file: str | None,
    *,
    jwt_issuer: str = "",
    jwt_audience: str = "",
    jwt_owner_claim: str = "sub",
    jwt_roles_claim: str = "roles",
) -> Authenticator | None:
    """The authenticator a service's settings describe; None when no credential source is set."""
    if not auth_file and not jwt_keys_file:
        return None
    principals = PrincipalTable.load(auth_file) if auth_file else None
    verifier = None
    if jwt_keys_file:
        verifier = JwtVerifier(
            JwtSettings(jwt_keys_file, jwt_issuer, jwt_audience, jwt_owner_claim, jwt_roles_claim)
        )
    return Authenticator(principals, verifier)
