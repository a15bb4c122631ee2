"""A small in-process stand-in for kube-apiserver, enough for the real helm and kubectl binaries to install
a chart: discovery, objects kept in memory, and server-side apply with field managers and conflicts.

What it is for: seeing what those binaries send (which field manager, whether they force conflicts, which
objects they touch) and how they react to the answers. What it is not: a Kubernetes. Its server-side apply
is a deliberately small model of the real one: every field a manager applied is owned by it, lists are atomic
(a CRD's ``spec.versions`` is ``+listType=atomic``), and an apply that changes a field another manager owns
is refused with 409 unless forced; an applier that no longer sets a field it owned gives it up. Defaulting,
granular list merging, pruning, validation and the other API-server duties are not modelled, so a test here
proves helm's and kubectl's side of the exchange, never the API server's.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

Path_ = tuple[str, ...]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


BUILT_IN = [
    Resource("", "v1", "namespaces", "Namespace", False),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "configmaps", "ConfigMap", True),
    Resource("", "v1", "services", "Service", True),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True),
    Resource("", "v1", "pods", "Pod", True),
    Resource("apps", "v1", "deployments", "Deployment", True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False),
]
CRDS = BUILT_IN[-1]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any


@dataclass(frozen=True)
class Manager:
    """A managedFields entry's identity: the same name with another operation is another manager."""

    name: str
    operation: str  # "Apply" (server-side apply) or "Update" (create, update, merge patch)
    api_version: str = "v1"

    def __str__(self) -> str:
        # As the API server prints one in a conflict (k8s.io/apimachinery managedfields/internal/conflict.go).
        return f'"{self.name}"' if self.operation == "Apply" else f'"{self.name}" using {self.api_version}'


@dataclass
class Stored:
    obj: dict[str, Any]
    # Manager -> the field paths it owns, with the values it set.
    owners: dict[Manager, dict[Path_, Any]] = field(default_factory=dict)


def leaves(value: Any, prefix: Path_ = ()) -> dict[Path_, Any]:
    """An object's fields as path -> value; lists are atomic (one field each), as ``spec.versions`` is."""
    if isinstance(value, dict) and value:
        found: dict[Path_, Any] = {}
        for key, item in value.items():
            found.update(leaves(item, (*prefix, key)))
        return found
    return {prefix: value}


IGNORED = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}


def owned_fields(config: dict[str, Any]) -> dict[Path_, Any]:
    """The fields a manager sets with this configuration: all but identity, server-set metadata and status."""
    body = {k: v for k, v in config.items() if k not in ("status", "metadata")}
    meta = {k: v for k, v in config.get("metadata", {}).items() if k in ("labels", "annotations") and v}
    if meta:
        body["metadata"] = meta
    return {path: v for path, v in leaves(body).items() if path not in IGNORED}


def dotted(path: Path_) -> str:
    return "." + ".".join(path)


def set_path(obj: dict[str, Any], path: Path_, value: Any) -> None:
    for key in path[:-1]:
        obj = obj.setdefault(key, {})
    obj[path[-1]] = copy.deepcopy(value)


def drop_path(obj: dict[str, Any], path: Path_) -> None:
    for key in path[:-1]:
        obj = obj.get(key, {})
        if not isinstance(obj, dict):
            return
    obj.pop(path[-1], None)


def merge(base: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386); helm sends strategic merge patches only for built-in kinds, which this
    treats the same way (good enough for the objects this chart renders)."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    result = dict(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(base.get(key), value)
    return result


class FakeAPIServer:
    """Serves on 127.0.0.1 in a thread; ``requests`` is every request received, in order."""

    def __init__(self) -> None:
        self.objects: dict[tuple[Resource, str, str], Stored] = {}
        self.requests: list[Request] = []
        self.lock = threading.RLock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeAPIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "fake", "user": {"token": "fake"}}],
                    "contexts": [
                        {
                            "name": "fake",
                            "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                        }
                    ],
                    "current-context": "fake",
                }
            )
        )
        return path

    # --- what tests look at -------------------------------------------------------------------------

    def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        with self.lock:
            for (resource, ns, n), stored in self.objects.items():
                if resource.kind == kind and n == name and ns == namespace:
                    return stored.obj
        return None

    def managers(self, kind: str, name: str, namespace: str = "") -> dict[str, set[str]]:
        """ "<field manager> (<operation>)" -> the fields it owns, dotted (``.spec.versions``)."""
        with self.lock:
            for (resource, ns, n), stored in self.objects.items():
                if resource.kind == kind and n == name and ns == namespace:
                    return {
                        f"{m.name} ({m.operation})": {dotted(p) for p in paths}
                        for m, paths in stored.owners.items()
                        if paths
                    }
        return {}

    def writes(self, kind: str | None = None, since: int = 0) -> Iterator[Request]:
        """The requests that change something (from request number ``since`` on), optionally of one kind."""
        for request in self.requests[since:]:
            if request.method in ("POST", "PUT", "PATCH", "DELETE"):
                target = self.route(request.path)
                if kind is None or (target is not None and target[0].kind == kind):
                    yield request

    # --- the API --------------------------------------------------------------------------------------

    def resources(self) -> list[Resource]:
        """Built-in resources, plus those of every stored CRD (served as soon as it exists)."""
        found = list(BUILT_IN)
        with self.lock:
            for (resource, _, _), stored in self.objects.items():
                if resource == CRDS:
                    spec = stored.obj["spec"]
                    for version in spec.get("versions", []):
                        found.append(
                            Resource(
                                spec["group"],
                                version["name"],
                                spec["names"]["plural"],
                                spec["names"]["kind"],
                                spec["scope"] == "Namespaced",
                            )
                        )
        return found

    def route(self, path: str) -> tuple[Resource, str, str] | None:
        """(resource, namespace, name) for an object or collection URL; name is '' for a collection."""
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        for resource in self.resources():
            if (resource.group, resource.version) == (group, version) and resource.plural == rest[0]:
                if len(rest) > 2:
                    return None  # subresources are not served
                return resource, namespace, rest[1] if len(rest) == 2 else ""
        return None

    def handle(self, request: Request) -> tuple[int, Any]:
        with self.lock:
            self.requests.append(request)
            discovery = self.discovery(request.path)
            if discovery is not None:
                return discovery
            target = self.route(request.path)
            if target is None:
                return status(
                    404, "NotFound", f"the server could not find the requested resource {request.path}"
                )
            resource, namespace, name = target
            key = (resource, namespace, name)
            if request.method == "GET" and not name:
                return 200, self.list(resource, namespace, request.query.get("labelSelector", ""))
            if request.method == "GET":
                if key not in self.objects:
                    return not_found(resource, name)
                return 200, self.objects[key].obj
            if request.method == "POST":
                name = request.body["metadata"]["name"]
                key = (resource, namespace, name)
                if key in self.objects:
                    return status(409, "AlreadyExists", f'{resource.plural} "{name}" already exists')
                self.objects[key] = Stored(self.stamp(resource, request.body))
                self.update_owners(self.objects[key], {}, request, resource)
                return 201, self.objects[key].obj
            if request.method == "DELETE":
                if key not in self.objects:
                    return not_found(resource, name)
                return 200, self.objects.pop(key).obj
            if request.method == "PUT":
                if key not in self.objects:
                    return not_found(resource, name)
                stored = self.objects[key]
                before = stored.obj
                stored.obj = self.stamp(resource, request.body, stored.obj)
                self.update_owners(stored, before, request, resource)
                return 200, stored.obj
            if request.method == "PATCH" and request.content_type.startswith("application/apply-patch"):
                return self.apply(key, request)
            if request.method == "PATCH":
                if key not in self.objects:
                    return not_found(resource, name)
                stored = self.objects[key]
                before = stored.obj
                stored.obj = self.stamp(resource, merge(stored.obj, request.body), stored.obj)
                self.update_owners(stored, before, request, resource)
                return 200, stored.obj
            return status(405, "MethodNotAllowed", request.method)

    def update_owners(
        self, stored: Stored, before: dict[str, Any], request: Request, resource: Resource
    ) -> None:
        """An update never conflicts: its manager takes every field it changed from whoever owned it."""
        manager = Manager(request.query.get("fieldManager", "unknown"), "Update", resource.group_version)
        old = owned_fields(before) if before else {}
        changed = {p: v for p, v in owned_fields(stored.obj).items() if p not in old or old[p] != v}
        for paths in stored.owners.values():
            for path in changed:
                paths.pop(path, None)
        stored.owners.setdefault(manager, {}).update(changed)

    def apply(self, key: tuple[Resource, str, str], request: Request) -> tuple[int, Any]:
        """Server-side apply, in the small model described at the top of this file."""
        resource, _, name = key
        if not request.query.get("fieldManager"):
            return status(422, "Invalid", "PATCH: fieldManager is required for apply requests")
        manager = Manager(request.query["fieldManager"], "Apply", resource.group_version)
        force = request.query.get("force") == "true"
        config = request.body
        applied = owned_fields(config)
        stored = self.objects.get(key)
        if stored is None:
            self.objects[key] = Stored(self.stamp(resource, config), {manager: applied})
            return 201, self.objects[key].obj
        current = leaves(stored.obj)
        conflicts = [
            (other, path)
            for other, paths in stored.owners.items()
            if other != manager
            for path in paths
            if path in applied and current.get(path) != applied[path]
        ]
        if conflicts and not force:
            return conflict_status(resource, name, conflicts)
        for other, path in conflicts:
            del stored.owners[other][path]
        obj = copy.deepcopy(stored.obj)
        # Fields this manager owned and no longer applies are released (removed if nobody else owns them).
        others = [paths for m, paths in stored.owners.items() if m != manager]
        for path in stored.owners.get(manager, {}):
            if path not in applied and not any(path in paths for paths in others):
                drop_path(obj, path)
        for path, value in applied.items():
            set_path(obj, path, value)
        stored.owners[manager] = applied
        stored.obj = self.stamp(resource, obj, stored.obj)
        return 200, stored.obj

    def stamp(
        self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj["apiVersion"] = resource.group_version
        obj["kind"] = resource.kind
        meta = obj.setdefault("metadata", {})
        old_meta = (old or {}).get("metadata", {})
        meta["uid"] = old_meta.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = old_meta.get("creationTimestamp") or "2026-01-01T00:00:00Z"
        meta["resourceVersion"] = str(len(self.requests))
        meta["generation"] = int(old_meta.get("generation", 0)) + 1
        if resource == CRDS:
            names = obj["spec"]["names"]
            obj["status"] = {
                "acceptedNames": names,
                "storedVersions": [v["name"] for v in obj["spec"]["versions"] if v.get("storage")],
                "conditions": [
                    {
                        "type": t,
                        "status": "True",
                        "reason": t,
                        "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                    for t in ("NamesAccepted", "Established")
                ],
            }
        return obj

    def list(self, resource: Resource, namespace: str, selector: str) -> dict[str, Any]:
        wanted = [term.split("=", 1) for term in selector.replace("==", "=").split(",") if "=" in term]
        items = [
            stored.obj
            for (res, ns, _), stored in self.objects.items()
            if res == resource and (not namespace or ns == namespace)
            if all(stored.obj["metadata"].get("labels", {}).get(k) == v for k, v in wanted)
        ]
        return {
            "apiVersion": resource.group_version,
            "kind": resource.kind + "List",
            "metadata": {"resourceVersion": str(len(self.requests))},
            "items": items,
        }

    def openapi_v3(self, gv: str, resources: list[Resource]) -> tuple[int, Any]:
        """One OpenAPI v3 document per group-version, with only what kubectl's validator looks for: that
        PATCH takes ``fieldValidation`` (clients then leave validation to the server; this one skips it)."""
        paths = {}
        for r in resources:
            if gv_path(r) != gv:
                continue
            scope = "/namespaces/{namespace}" if r.namespaced else ""
            paths[f"/{gv}{scope}/{r.plural}/{{name}}"] = {
                "patch": {
                    "x-kubernetes-group-version-kind": {
                        "group": r.group,
                        "version": r.version,
                        "kind": r.kind,
                    },
                    "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "OK"}},
                }
            }
        if not paths:
            return status(404, "NotFound", "the server could not find the requested resource")
        return 200, {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.36.2"},
            "paths": paths,
        }

    def discovery(self, path: str) -> tuple[int, Any] | None:
        resources = self.resources()
        if path == "/version":
            return 200, {"major": "1", "minor": "36", "gitVersion": "v1.36.2", "platform": "linux/amd64"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for r in resources:
                if r.group and r.version not in groups.setdefault(r.group, []):
                    groups[r.group].append(r.version)
            return 200, {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                    }
                    for g, vs in groups.items()
                ],
            }
        if path == "/openapi/v3":
            return 200, {
                "paths": {gv_path(r): {"serverRelativeURL": f"/openapi/v3/{gv_path(r)}"} for r in resources}
            }
        if path.startswith("/openapi/v3/"):
            return self.openapi_v3(path.removeprefix("/openapi/v3/"), resources)
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[:1] == ["apis"] and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            return None
        served = [r for r in resources if (r.group, r.version) == (group, version)]
        if not served:
            return status(404, "NotFound", "the server could not find the requested resource")
        return 200, {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": served[0].group_version,
            "resources": [
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                }
                for r in served
            ],
        }


def gv_path(resource: Resource) -> str:
    return f"apis/{resource.group}/{resource.version}" if resource.group else f"api/{resource.version}"


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> tuple[int, Any]:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return code, body


def not_found(resource: Resource, name: str) -> tuple[int, Any]:
    group = f".{resource.group}" if resource.group else ""
    return status(
        404,
        "NotFound",
        f'{resource.plural}{group} "{name}" not found',
        {"name": name, "group": resource.group, "kind": resource.plural},
    )


def conflict_status(resource: Resource, name: str, conflicts: list[tuple[Manager, Path_]]) -> tuple[int, Any]:
    """409 worded as the API server words it (k8s.io/apimachinery managedfields/internal/conflict.go)."""
    if len(conflicts) == 1:
        ((manager, path),) = conflicts
        message = f"Apply failed with 1 conflict: conflict with {manager}: {dotted(path)}"
    else:
        lines = []
        for manager in sorted({m for m, _ in conflicts}, key=str):
            lines.append(f"conflicts with {manager}:")
            lines.extend(f"- {dotted(p)}" for m, p in conflicts if m == manager)
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    causes = [
        {"reason": "FieldManagerConflict", "message": f"conflict with {m}", "field": dotted(p)}
        for m, p in conflicts
    ]
    return status(
        409,
        "Conflict",
        message,
        {"name": name, "group": resource.group, "kind": resource.plural, "causes": causes},
    )


def _fields(data: bytes) -> Iterator[tuple[int, bytes | int]]:
    """Protocol buffers wire format: (field number, value) for varint and length-delimited fields."""
    i = 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 2:
            size = varint()
            yield number, data[i : i + size]
            i += size
        else:
            raise ValueError(f"protobuf wire type {wire} is not expected in a Secret")


def _map_entry(entry: bytes) -> tuple[str, bytes]:
    parts = {n: v for n, v in _fields(entry)}
    key, value = parts.get(1, b""), parts.get(2, b"")
    assert isinstance(key, bytes) and isinstance(value, bytes)
    return key.decode(), value


def decode_secret(raw: bytes) -> dict[str, Any]:
    """A v1.Secret sent as protobuf (client-go's default for built-in kinds), as its JSON form. Only the
    fields helm's Secret storage driver sets: name, namespace, labels, type, data."""
    assert raw[:4] == b"k8s\x00", raw[:4]
    (envelope,) = [v for n, v in _fields(raw[4:]) if n == 2]  # runtime.Unknown.raw
    assert isinstance(envelope, bytes)
    meta: dict[str, Any] = {}
    secret: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": meta}
    for number, value in _fields(envelope):
        assert isinstance(value, bytes)
        if number == 1:  # ObjectMeta
            for n, v in _fields(value):
                if not isinstance(v, bytes):
                    continue  # generation and the like
                if n in (1, 3, 6):  # name, namespace, resourceVersion
                    meta[{1: "name", 3: "namespace", 6: "resourceVersion"}[n]] = v.decode()
                elif n in (11, 12):  # labels, annotations
                    k, item = _map_entry(v)
                    meta.setdefault("labels" if n == 11 else "annotations", {})[k] = item.decode()
        elif number == 2:  # data
            k, item = _map_entry(value)
            secret.setdefault("data", {})[k] = base64.b64encode(item).decode()
        elif number == 3:
            secret["type"] = value.decode()
    return secret


def _handler(api: FakeAPIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def handle(self) -> None:
            # A client that closed its connection (a watch it gave up on) needs no answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                super().handle()

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("application/vnd.kubernetes.protobuf"):
                body: Any = decode_secret(raw)  # helm's release storage: the only protobuf client here
            else:
                body = yaml.safe_load(raw) if raw else None  # JSON is YAML; apply patches may be either
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if query.get("watch") in ("true", "1"):
                code, payload = 200, None
            else:
                code, payload = api.handle(Request(self.command, url.path, query, content_type, body))
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler
