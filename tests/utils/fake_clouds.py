# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test doubles of the compute APIs that snapshot backups call, and of the host they read.

* `Ec2LockProxy`: an HTTP proxy in front of moto's EC2 API that answers LockSnapshot (which
  moto lacks) with the documented EC2 response, and forwards every other request to moto.
* `FakeComputeEngine`: the Compute Engine REST calls of a snapshot backup (instances.get,
  disks.get, snapshots.insert, globalOperations.get), answered from memory over plain HTTP.
* `FakeAzureCompute`: the Azure Resource Manager calls (virtualMachines get, snapshots PUT
  with an Azure-AsyncOperation to poll, the operation status), over TLS with a certificate
  made for the test, because the SDK's bearer-token policy refuses plain HTTP.
* `prepare_host`: a folder shaped like the parts of a host the snapshot code reads
  (proc/self/mountinfo, sys/block/*/device/serial, dev/... links).

Only the requests and fields the SDKs send and read are implemented, in their documented shapes.
"""

from __future__ import annotations

import datetime
import http.server
import json
import os
import ssl
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

EC2_NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"


class _Server:
    """A threaded HTTP server on a free loopback port, run in the background."""

    scheme = "http"

    def __init__(self, handler: type) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.fake = self  # type: ignore[attr-defined]
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def endpoint_url(self) -> str:
        return "%s://127.0.0.1:%d" % (self.scheme, self.port)

    def start(self) -> "_Server":
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
        pass

    @property
    def fake(self) -> Any:
        return self.server.fake  # type: ignore[attr-defined]

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, body: bytes, content_type: str, headers: Optional[Mapping[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def reply_json(self, status: int, document: Any, headers: Optional[Mapping[str, str]] = None) -> None:
        self.reply(status, json.dumps(document).encode(), "application/json", headers)


# --- EC2: LockSnapshot in front of moto ------------------------------------------------------------


class _Ec2ProxyHandler(_Handler):
    def do_POST(self) -> None:  # noqa: N802 - the http.server naming
        body = self.body()
        form = {key: values[0] for key, values in urllib.parse.parse_qs(body.decode()).items()}
        if form.get("Action") == "LockSnapshot":
            self.fake.locks.append(form)
            self.reply(200, lock_snapshot_response(form), "text/xml;charset=UTF-8")
            return
        self.forward("POST", body)

    def do_GET(self) -> None:  # noqa: N802
        self.forward("GET", None)

    def forward(self, method: str, body: Optional[bytes]) -> None:
        headers = {name: value for name, value in self.headers.items() if name.lower() not in ("host", "content-length")}
        request = urllib.request.Request(self.fake.upstream + self.path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, data, content_type = response.status, response.read(), response.headers.get("Content-Type")
        except urllib.error.HTTPError as error:
            status, data, content_type = error.code, error.read(), error.headers.get("Content-Type")
        self.reply(status, data, content_type or "text/xml")


def lock_snapshot_response(form: Mapping[str, str]) -> bytes:
    """The LockSnapshot response of the EC2 API reference (LockSnapshotResponse elements)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    mode = form["LockMode"]
    cool_off = form.get("CoolOffPeriod")
    if "ExpirationDate" in form:
        expires = datetime.datetime.fromisoformat(form["ExpirationDate"].replace("Z", "+00:00"))
    else:
        expires = now + datetime.timedelta(days=int(form["LockDuration"]))
    state = "compliance-cooloff" if mode == "compliance" and cool_off else mode
    stamp = "%Y-%m-%dT%H:%M:%S.000Z"
    elements = [
        ("requestId", str(uuid.uuid4())),
        ("snapshotId", form["SnapshotId"]),
        ("lockState", state),
        ("lockDuration", form.get("LockDuration")),
        ("coolOffPeriod", cool_off),
        ("coolOffPeriodExpiresOn", (now + datetime.timedelta(hours=int(cool_off))).strftime(stamp) if cool_off else None),
        ("lockCreatedOn", now.strftime(stamp)),
        ("lockExpiresOn", expires.strftime(stamp)),
        ("lockDurationStartTime", now.strftime(stamp)),
    ]
    inner = "".join("<%s>%s</%s>" % (name, value, name) for name, value in elements if value is not None)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<LockSnapshotResponse xmlns="%s">%s</LockSnapshotResponse>'
            % (EC2_NAMESPACE, inner)).encode()


class Ec2LockProxy(_Server):
    """EC2 at `endpoint_url`: moto behind it, LockSnapshot answered here and recorded in `locks`."""

    def __init__(self, upstream: str) -> None:
        super().__init__(_Ec2ProxyHandler)
        self.upstream = upstream.rstrip("/")
        self.locks: List[Dict[str, str]] = []


def make_ec2_instance(ec2: Any, name: str, volumes: Sequence[Tuple[str, str]]) -> Dict[str, Any]:
    """An instance tagged `name` in moto, with a volume tagged and attached for each (volume name, device).

    Returns {"instance_id": ..., "volumes": {volume name: volume id}}.
    """
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}],
    )["Instances"][0]
    created = {}
    for volume_name, device in volumes:
        volume = ec2.create_volume(
            Size=10, AvailabilityZone=instance["Placement"]["AvailabilityZone"],
            TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": volume_name}]}],
        )
        ec2.attach_volume(VolumeId=volume["VolumeId"], InstanceId=instance["InstanceId"], Device=device)
        created[volume_name] = volume["VolumeId"]
    return {"instance_id": instance["InstanceId"], "volumes": created}


# --- the host ------------------------------------------------------------------------------------------


def prepare_host(root: str, mounts: Sequence[Tuple[str, str]], serials: Optional[Mapping[str, str]] = None,
                 links: Optional[Mapping[str, str]] = None, options: str = "rw,noatime",
                 super_options: str = "rw,errors=remount-ro") -> str:
    """A folder that reads like a host: mounts are (device, mount point) in mountinfo order,
    serials map block device names to /sys/block/<name>/device/serial, links map /dev paths to
    their target (a /dev path, written as a relative link as udev does). Returns root."""
    lines = ["1 0 8:1 / / rw,relatime shared:1 - ext4 /dev/root rw"]
    for number, (device, mount_point) in enumerate(mounts, start=20):
        escaped = mount_point.replace(" ", "\\040")
        lines.append("%d 1 259:%d / %s %s shared:%d - xfs %s %s" % (number, number, escaped, options, number, device,
                                                                    super_options))
    _write(os.path.join(root, "proc", "self", "mountinfo"), "\n".join(lines) + "\n")
    for name, serial in (serials or {}).items():
        _write(os.path.join(root, "sys", "block", name, "device", "serial"), serial + "\n")
    for link, target in (links or {}).items():
        path = os.path.join(root, link.lstrip("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(os.path.relpath(os.path.join(root, target.lstrip("/")), os.path.dirname(path)), path)
    return root


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


# --- Compute Engine ------------------------------------------------------------------------------------


class _ComputeEngineHandler(_Handler):
    def do_GET(self) -> None:  # noqa: N802
        status, document = self.fake.get(urllib.parse.urlparse(self.path).path)
        self.reply_json(status, document)

    def do_POST(self) -> None:  # noqa: N802
        parsed = urllib.parse.urlparse(self.path)
        status, document = self.fake.post(parsed.path, json.loads(self.body() or b"{}"))
        self.reply_json(status, document)


class FakeComputeEngine(_Server):
    """Compute Engine v1 for one project and zone: instances, disks, snapshots and operations.

    `add_instance(name, {device name: disk name})` attaches disks; snapshots.insert returns a
    RUNNING global operation that is DONE from the first globalOperations.get on.
    """

    def __init__(self, project: str, zone: str) -> None:
        super().__init__(_ComputeEngineHandler)
        self.project, self.zone = project, zone
        self.instances: Dict[str, Dict[str, Any]] = {}
        self.disks: Dict[str, Dict[str, Any]] = {}
        self.snapshots: Dict[str, Dict[str, Any]] = {}
        self.operations: Dict[str, Dict[str, Any]] = {}
        self.requests: List[Tuple[str, str]] = []
        self.fail_snapshots = False

    @property
    def base(self) -> str:
        return "/compute/v1/projects/%s" % self.project

    def link(self, path: str) -> str:
        return "https://www.googleapis.com/compute/v1/projects/%s/%s" % (self.project, path)

    def add_instance(self, name: str, disks: Mapping[str, str]) -> None:
        attached = [{"kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE", "boot": True,
                     "deviceName": "persistent-disk-0", "index": 0,
                     "source": self.link("zones/%s/disks/%s-boot" % (self.zone, name))}]
        self.disks[name + "-boot"] = {"kind": "compute#disk", "id": "999", "name": name + "-boot", "sizeGb": "10",
                                      "zone": self.link("zones/%s" % self.zone), "status": "READY",
                                      "selfLink": self.link("zones/%s/disks/%s-boot" % (self.zone, name))}
        for index, (device, disk) in enumerate(disks.items(), start=1):
            self.disks[disk] = {"kind": "compute#disk", "id": str(1000 + index), "name": disk, "sizeGb": "10",
                                "zone": self.link("zones/%s" % self.zone), "status": "READY",
                                "selfLink": self.link("zones/%s/disks/%s" % (self.zone, disk))}
            attached.append({"kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE",
                             "boot": False, "deviceName": device, "index": index,
                             "source": self.link("zones/%s/disks/%s" % (self.zone, disk))})
        self.instances[name] = {"kind": "compute#instance", "id": "42", "name": name, "status": "RUNNING",
                                "zone": self.link("zones/%s" % self.zone), "disks": attached,
                                "selfLink": self.link("zones/%s/instances/%s" % (self.zone, name))}

    def not_found(self, what: str) -> Tuple[int, Dict[str, Any]]:
        message = "The resource '%s' was not found" % what
        return 404, {"error": {"code": 404, "message": message,
                               "errors": [{"message": message, "domain": "global", "reason": "notFound"}]}}

    def get(self, path: str) -> Tuple[int, Dict[str, Any]]:
        self.requests.append(("GET", path))
        zone = "%s/zones/%s/" % (self.base, self.zone)
        tables = {zone + "instances/": self.instances, zone + "disks/": self.disks,
                  self.base + "/global/operations/": self.operations, self.base + "/global/snapshots/": self.snapshots}
        for prefix, table in tables.items():
            if path.startswith(prefix):
                name = path[len(prefix):]
                if name not in table:
                    return self.not_found(path)
                if table is self.operations:
                    self._finish(table[name])
                return 200, table[name]
        return self.not_found(path)

    def post(self, path: str, body: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        self.requests.append(("POST", path))
        if path == self.base + "/global/snapshots":
            return 200, self._insert_snapshot(body)
        if path.startswith(self.base + "/global/operations/") and path.endswith("/wait"):
            name = path[len(self.base + "/global/operations/"):-len("/wait")]
            self._finish(self.operations[name])
            return 200, self.operations[name]
        return self.not_found(path)

    def _insert_snapshot(self, body: Dict[str, Any]) -> Dict[str, Any]:
        name = body["name"]
        operation_name = "operation-%s" % uuid.uuid4().hex[:12]
        operation = {"kind": "compute#operation", "id": str(len(self.operations) + 1), "name": operation_name,
                     "operationType": "insert", "status": "RUNNING", "progress": 0,
                     "targetLink": self.link("global/snapshots/%s" % name),
                     "selfLink": self.link("global/operations/%s" % operation_name)}
        self.operations[operation_name] = operation
        self.snapshots[name] = {"kind": "compute#snapshot", "name": name, "sourceDisk": body.get("sourceDisk"),
                                "status": "CREATING", "selfLink": self.link("global/snapshots/%s" % name)}
        return dict(operation)

    def _finish(self, operation: Dict[str, Any]) -> None:
        if operation["status"] == "DONE":
            return
        operation.update(status="DONE", progress=100)
        name = operation["targetLink"].rsplit("/", 1)[1]
        if self.fail_snapshots:
            operation.update(httpErrorStatusCode=400, httpErrorMessage="BAD REQUEST",
                             error={"errors": [{"code": "QUOTA_EXCEEDED", "message": "Quota 'SNAPSHOTS' exceeded"}]})
            del self.snapshots[name]
        else:
            self.snapshots[name]["status"] = "READY"


# --- Azure Resource Manager ---------------------------------------------------------------------------


class _AzureHandler(_Handler):
    def do_GET(self) -> None:  # noqa: N802
        self.fake.requests.append(("GET", self.path))
        status, document, headers = self.fake.get(urllib.parse.urlparse(self.path).path)
        self.reply_json(status, document, headers)

    def do_PUT(self) -> None:  # noqa: N802
        self.fake.requests.append(("PUT", self.path))
        status, document, headers = self.fake.put(urllib.parse.urlparse(self.path).path, json.loads(self.body()))
        self.reply_json(status, document, headers)


class FakeAzureCompute(_Server):
    """Microsoft.Compute of one subscription and resource group, over TLS (see `ca_file`).

    A snapshot PUT answers 202 with provisioningState Creating and an Azure-AsyncOperation
    URL; that operation reports Succeeded when polled, and the snapshot is then Succeeded.
    """

    scheme = "https"

    def __init__(self, subscription: str, resource_group: str, workdir: str, location: str = "westeurope") -> None:
        super().__init__(_AzureHandler)
        self.subscription, self.resource_group, self.location = subscription, resource_group, location
        self.ca_file = _self_signed_certificate(workdir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, os.path.join(workdir, "fake-azure.key"))
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.vms: Dict[str, Dict[str, Any]] = {}
        self.snapshots: Dict[str, Dict[str, Any]] = {}
        self.disks: Dict[str, Dict[str, Any]] = {}
        self.operations: Dict[str, str] = {}  # operation id -> snapshot name
        self.requests: List[Tuple[str, str]] = []
        self.fail_snapshots = False

    @property
    def group_path(self) -> str:
        return "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute" % (self.subscription, self.resource_group)

    def add_vm(self, name: str, disks: Mapping[int, str], sources: Optional[Mapping[str, str]] = None) -> None:
        """A VM with a managed data disk per {lun: disk name}; `sources` gives the snapshot a disk
        was made from, by disk name (the others are empty disks)."""
        for disk in disks.values():
            source = (sources or {}).get(disk)
            creation = ({"createOption": "Copy", "sourceResourceId": "%s/snapshots/%s" % (self.group_path, source)}
                        if source else {"createOption": "Empty"})
            self.disks[disk] = {"id": "%s/disks/%s" % (self.group_path, disk), "name": disk,
                                "type": "Microsoft.Compute/disks", "location": self.location,
                                "properties": {"creationData": creation, "diskSizeGB": 10,
                                               "provisioningState": "Succeeded"}}
        data_disks = [{"lun": lun, "name": disk, "createOption": "Attach", "caching": "None", "diskSizeGB": 10,
                       "managedDisk": {"id": "%s/disks/%s" % (self.group_path, disk),
                                       "storageAccountType": "Premium_LRS"}}
                      for lun, disk in disks.items()]
        self.vms[name] = {
            "id": "%s/virtualMachines/%s" % (self.group_path, name), "name": name,
            "type": "Microsoft.Compute/virtualMachines", "location": self.location,
            "properties": {"vmId": str(uuid.uuid4()), "provisioningState": "Succeeded",
                           "storageProfile": {"osDisk": {"name": name + "-os", "osType": "Linux",
                                                         "createOption": "FromImage"},
                                              "dataDisks": data_disks}},
        }

    def not_found(self, kind: str, name: str) -> Tuple[int, Dict[str, Any], Dict[str, str]]:
        return 404, {"error": {"code": "ResourceNotFound",
                               "message": "The Resource '%s/%s' under resource group '%s' was not found."
                                          % (kind, name, self.resource_group)}}, {}

    def get(self, path: str) -> Tuple[int, Dict[str, Any], Dict[str, str]]:
        for kind, table in (("virtualMachines", self.vms), ("snapshots", self.snapshots), ("disks", self.disks)):
            prefix = "%s/%s/" % (self.group_path, kind)
            if path.startswith(prefix):
                name = path[len(prefix):]
                return (200, table[name], {}) if name in table else self.not_found("Microsoft.Compute/" + kind, name)
        prefix = "/subscriptions/%s/providers/Microsoft.Compute/locations/%s/operations/" % (self.subscription,
                                                                                             self.location)
        if path.startswith(prefix):
            return 200, self._finish(path[len(prefix):]), {}
        return self.not_found("unknown", path)

    def put(self, path: str, body: Dict[str, Any]) -> Tuple[int, Dict[str, Any], Dict[str, str]]:
        prefix = self.group_path + "/snapshots/"
        if not path.startswith(prefix):
            return self.not_found("unknown", path)
        name = path[len(prefix):]
        snapshot = {"id": path, "name": name, "type": "Microsoft.Compute/snapshots", "location": body["location"],
                    "properties": dict(body.get("properties", {}), provisioningState="Creating",
                                       timeCreated=datetime.datetime.now(datetime.timezone.utc).isoformat())}
        self.snapshots[name] = snapshot
        operation = str(uuid.uuid4())
        self.operations[operation] = name
        status_url = "%s/subscriptions/%s/providers/Microsoft.Compute/locations/%s/operations/%s?api-version=%s" % (
            self.endpoint_url, self.subscription, self.location, operation, "2023-10-02")
        return 202, snapshot, {"Azure-AsyncOperation": status_url, "Retry-After": "0"}

    def _finish(self, operation: str) -> Dict[str, Any]:
        name = self.operations[operation]
        if self.fail_snapshots:
            self.snapshots[name]["properties"]["provisioningState"] = "Failed"
            return {"name": operation, "status": "Failed",
                    "error": {"code": "OperationNotAllowed", "message": "Snapshot quota exceeded"}}
        self.snapshots[name]["properties"]["provisioningState"] = "Succeeded"
        return {"name": operation, "status": "Succeeded",
                "startTime": datetime.datetime.now(datetime.timezone.utc).isoformat()}


def _self_signed_certificate(workdir: str) -> str:
    """A certificate for 127.0.0.1 (and its key), made with openssl; returns the certificate's path."""
    certificate = os.path.join(workdir, "fake-azure.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", os.path.join(workdir, "fake-azure.key"),
         "-out", certificate],
        check=True, capture_output=True,
    )
    return certificate


class StaticToken:
    """A TokenCredential (azure.core.credentials protocol) that hands out a fixed token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("fake-token", int(datetime.datetime.now().timestamp()) + 3600)
