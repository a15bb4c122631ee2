"""kmock behind TLS with a kube-apiserver's authentication, and kubeconfigs that log in to it.

Plain-HTTP kmock with no auth hid issue 11: the operator's own client failed on kubeconfigs with inline,
base64-encoded certificates (kind, k3d, EKS). Here the operator has to verify the server against a CA the
test made and log in with what the kubeconfig carries.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import kmock
import trustme
import yaml
from aiohttp import web
from aiohttp.test_utils import RawTestServer

CLIENT_USER = "deltaingest-operator"  # the client certificate's common name
UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}

Auth = Literal["client-certificate", "token", "none"]
# inline: *-data fields (base64 PEM, as kind and k3d write them); files: paths; token: CA data and a bearer
# token; exec: CA data and a client.authentication.k8s.io/v1 credential plugin printing the token (as EKS).
Login = Literal["inline", "files", "token", "exec"]


@dataclass(frozen=True)
class Seen:
    """One request that reached the TLS endpoint and how it authenticated ("none": refused with 401)."""

    auth: Auth
    user: str  # the certificate's common name; empty for a token or none
    method: str
    path: str


class SecureAPI:
    """The ``k8s`` fixture's kmock on an https port of its own, for the operator under test.

    The port is not registered with kmock, so ``k8s.url`` stays the plain one the test's own requests use:
    everything in ``seen`` came from the operator. Like a kube-apiserver, a request must present a client
    certificate signed by ``ca`` or ``Authorization: Bearer <token>``; others get 401 and a Status.
    """

    def __init__(self, backend: kmock.RawHandler) -> None:
        self.ca = trustme.CA()
        self.client = self.ca.issue_cert(common_name=CLIENT_USER)
        self.token = secrets.token_urlsafe(16)
        self.seen: list[Seen] = []
        self._backend = backend
        self._server = RawTestServer(self._serve, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self._server.make_url(""))

    async def __aenter__(self) -> SecureAPI:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(context)
        self.ca.configure_trust(context)
        context.verify_mode = ssl.CERT_OPTIONAL  # a certificate is one way to log in, a token the other
        await self._server.start_server(ssl=context)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._server.close()

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        auth, user = self._authenticate(request)
        self.seen.append(Seen(auth, user, request.method, request.path))
        if auth == "none":
            return web.json_response(UNAUTHORIZED, status=401)
        # kmock serves the request on this connection itself, watch streams included.
        return await self._backend(request)

    def _authenticate(self, request: web.BaseRequest) -> tuple[Auth, str]:
        # The handshake (CERT_OPTIONAL) refused any certificate the CA did not sign: one seen here is valid.
        cert = request.transport.get_extra_info("peercert") if request.transport else None
        if cert:
            subject = {key: value for rdn in cert["subject"] for key, value in rdn}
            return "client-certificate", subject.get("commonName", "")
        if request.headers.get("Authorization") == f"Bearer {self.token}":
            return "token", ""
        return "none", ""


def write_kubeconfig(directory: Path, api: SecureAPI, login: Login) -> Path:
    """A kubeconfig for ``api`` in ``directory``, logging in the ``login`` way."""
    cluster: dict[str, Any] = {"server": api.url, "certificate-authority-data": _base64(api.ca.cert_pem)}
    user: dict[str, Any]
    match login:
        case "inline":
            user = {
                "client-certificate-data": _base64(api.client.cert_chain_pems[0]),
                "client-key-data": _base64(api.client.private_key_pem),
            }
        case "files":
            pems = (
                ("ca.crt", api.ca.cert_pem),
                ("client.crt", api.client.cert_chain_pems[0]),
                ("client.key", api.client.private_key_pem),
            )
            for name, blob in pems:
                blob.write_to_path(str(directory / name))
            cluster = {"server": api.url, "certificate-authority": str(directory / "ca.crt")}
            user = {
                "client-certificate": str(directory / "client.crt"),
                "client-key": str(directory / "client.key"),
            }
        case "token":
            user = {"token": api.token}
        case "exec":
            credential = {
                "apiVersion": "client.authentication.k8s.io/v1",
                "kind": "ExecCredential",
                "status": {"token": api.token},
            }
            user = {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": ["-c", f"print({json.dumps(credential)!r})"],
                    "interactiveMode": "Never",
                }
            }
    path = directory / "kubeconfig"
    context = {"cluster": "secure-kmock", "user": "operator"}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "secure-kmock", "cluster": cluster}],
                "users": [{"name": "operator", "user": user}],
                "contexts": [{"name": "secure-kmock", "context": context}],
                "current-context": "secure-kmock",
            }
        )
    )
    return path


def _base64(blob: trustme.Blob) -> str:
    return base64.b64encode(blob.bytes()).decode()
