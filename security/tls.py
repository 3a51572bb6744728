"""TLS credentials from PEM files, with grpcio's own implementation (no hand-written crypto)."""

from __future__ import annotations

import ipaddress
import pathlib

import grpc


def _read(path: str | pathlib.Path, what: str) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def server_credentials(
    cert_file: str, key_file: str, client_ca_file: str | None = None
) -> grpc.ServerCredentials:
    """The server's certificate and key; with `client_ca_file`, clients must present a
    certificate that CA signed (mTLS), and the handshake refuses any other."""
    pair = [(_read(key_file, "TLS key"), _read(cert_file, "TLS certificate"))]
    if client_ca_file:
        return grpc.ssl_server_credentials(
            pair, root_certificates=_read(client_ca_file, "client CA"), require_client_auth=True
        )
    return grpc.ssl_server_credentials(pair)


def channel_credentials(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> grpc.ChannelCredentials:
    """Client TLS: trust `ca_file` (the system roots when None); a client certificate for mTLS."""
    if bool(cert_file) != bool(key_file):
        raise ValueError("a client certificate needs both its certificate and its key file")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file, "CA certificate") if ca_file else None,
        private_key=_read(key_file, "TLS key") if key_file else None,
        certificate_chain=_read(cert_file, "TLS certificate") if cert_file else None,
    )


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (localhost, 127.0.0.0/8, ::1, unix sockets)."""
    if host.startswith("unix:"):
        return True
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(address: str) -> str:
    """The host part of "host:port", "[v6]:port" or "unix:path"."""
    if address.startswith("unix:"):
        return address
    if address.startswith("["):
        return address[1 : address.index("]")]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def sidecar_credentials(
    address: str | None,
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    *,
    allow_plaintext_remote: bool = False,
) -> grpc.ChannelCredentials | None:
    """TLS to a sidecar when configured; refused (ValueError) for a plaintext non-loopback one."""
    if not address:
        return None
    if ca_file or cert_file:
        return channel_credentials(ca_file, cert_file, key_file)
    if not is_loopback(host_of(address)) and not allow_plaintext_remote:
        raise ValueError(
            f"the rate-limiter sidecar {address} is not on loopback: reach it over mTLS "
            "(--ratelimiter-tls-ca, --ratelimiter-tls-cert, --ratelimiter-tls-key)"
        )
    return None
