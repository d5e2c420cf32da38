"""A fake `kubectl` for the deploy script tests: the cluster is a directory of the overlay's built objects
(one JSON file per object), every call is appended to a log, and every change is made by the real kubectl
offline (`kubectl patch|set image|annotate --local -f`), so a malformed patch or flag fails as it would
against a cluster. Only the server's side is simulated: rollouts succeed, created Jobs complete, readiness
is the Deployment's replica count, and `port-forward` forwards to FAKE_KUBECTL_FORWARD_PORT.

Environment: FAKE_KUBECTL_STATE (directory of objects), FAKE_KUBECTL_LOG (JSON lines of calls),
FAKE_KUBECTL_FAIL (fail every call whose arguments contain this text), FAKE_KUBECTL_JOB=fail (created
Jobs fail), FAKE_KUBECTL_UNREADY=<deployment> (that Deployment has no ready pods), REAL_KUBECTL.
Unsupported commands exit 2, so a script cannot silently depend on something this fake does not model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

KINDS = {"service": "Service", "deployment": "Deployment", "cronjob": "CronJob", "job": "Job",
         "ingress": "Ingress", "configmap": "ConfigMap"}


def state() -> Path:
    return Path(os.environ["FAKE_KUBECTL_STATE"])


def path_of(kind: str, name: str) -> Path:
    return state() / f"{KINDS[kind.lower()]}.{name}.json"


def resource(args: list[str]) -> tuple[str, str, list[str]]:
    """`TYPE/NAME rest` or `TYPE NAME rest` -> (type, name, rest)."""
    if "/" in args[0]:
        kind, name = args[0].split("/", 1)
        return kind, name, args[1:]
    return args[0], args[1], args[2:]


def real(verb: list[str], file: Path, rest: list[str], output: str = "json") -> subprocess.CompletedProcess[str]:
    return subprocess.run([os.environ["REAL_KUBECTL"], *verb, "--local", "-f", str(file), *rest, "-o", output],
                          capture_output=True, text=True, timeout=30)


def mutate(verb: list[str], kind: str, name: str, rest: list[str]) -> int:
    file = path_of(kind, name)
    if not file.exists():
        print(f'Error from server (NotFound): {kind} "{name}" not found', file=sys.stderr)
        return 1
    done = real(verb, file, rest)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        return done.returncode
    if not done.stdout.strip():  # kubectl prints nothing when the change is a no-op (e.g. the same image)
        print(f"{kind}/{name} unchanged")
        return 0
    obj = json.loads(done.stdout)
    if obj["kind"] == "Deployment":
        obj["status"] = status_of(obj)
    file.write_text(json.dumps(obj))
    print(f"{kind}/{name} changed")
    return 0


def status_of(obj: dict[str, Any]) -> dict[str, Any]:
    replicas = obj["spec"].get("replicas", 1)
    ready = 0 if os.environ.get("FAKE_KUBECTL_UNREADY") == obj["metadata"]["name"] else replicas
    return {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas}


def get(args: list[str]) -> int:
    kind, name, rest = resource(args)
    file = path_of(kind, name)
    if not file.exists():
        print(f'Error from server (NotFound): {kind} "{name}" not found', file=sys.stderr)
        return 1
    if rest[:1] != ["-o"]:
        print(f"fake kubectl: unsupported get {args}", file=sys.stderr)
        return 2
    obj = json.loads(file.read_text())
    if obj["kind"] == "Deployment":  # the server's side: status follows FAKE_KUBECTL_UNREADY
        obj["status"] = status_of(obj)
        file.write_text(json.dumps(obj))
    done = real(["patch"], file, ["--type=merge", "-p", "{}"], output=rest[1])
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


def create_job(args: list[str]) -> int:
    if args[0] != "job" or not args[2].startswith("--from=cronjob/"):
        print(f"fake kubectl: unsupported create {args}", file=sys.stderr)
        return 2
    if path_of("job", args[1]).exists():
        print(f'Error from server (AlreadyExists): jobs.batch "{args[1]}" already exists', file=sys.stderr)
        return 1
    cron = json.loads(path_of("cronjob", args[2].removeprefix("--from=cronjob/")).read_text())
    failed = os.environ.get("FAKE_KUBECTL_JOB") == "fail"
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": args[1]},
           "spec": cron["spec"]["jobTemplate"]["spec"], "status": {"failed": 1} if failed else {"succeeded": 1}}
    path_of("job", args[1]).write_text(json.dumps(job))
    print(f"job.batch/{args[1]} created")
    return 0


def rollout(args: list[str]) -> int:
    if args[:1] != ["status"]:
        print(f"fake kubectl: unsupported rollout {args}", file=sys.stderr)
        return 2
    kind, name, _rest = resource(args[1:])
    obj = json.loads(path_of(kind, name).read_text())
    if status_of(obj)["readyReplicas"] == 0:
        print(f'error: timed out waiting for the condition on deployments/{name}', file=sys.stderr)
        return 1
    print(f'deployment "{name}" successfully rolled out')
    return 0


def port_forward(args: list[str]) -> int:
    kind, name, _rest = resource(args)
    if not path_of(kind, name).exists():
        print(f'Error from server (NotFound): {kind} "{name}" not found', file=sys.stderr)
        return 1
    with open(state().parent / "port-forward.pids", "a") as pids:  # the tests check each one is stopped
        pids.write(f"{os.getpid()}\n")
    print(f"Forwarding from 127.0.0.1:{os.environ['FAKE_KUBECTL_FORWARD_PORT']} -> 8080", flush=True)
    while True:
        time.sleep(1)


def main(argv: list[str]) -> int:
    args = list(argv)
    namespace = None
    if args[:1] == ["-n"]:
        namespace, args = args[1], args[2:]
    failing = os.environ.get("FAKE_KUBECTL_FAIL")
    with open(os.environ["FAKE_KUBECTL_LOG"], "a") as log:
        log.write(json.dumps({"namespace": namespace, "args": args,
                              "failed": bool(failing and failing in " ".join(args))}) + "\n")
    if failing and failing in " ".join(args):
        print(f"error: injected failure ({failing})", file=sys.stderr)
        return 1
    verb, rest = args[0], args[1:]
    if verb == "get":
        return get(rest)
    if verb == "patch":
        kind, name, more = resource(rest)
        return mutate(["patch"], kind, name, more)
    if verb == "annotate":
        kind, name, more = resource(rest)
        return mutate(["annotate"], kind, name, more)
    if verb == "set" and rest[0] == "image":
        kind, name, more = resource(rest[1:])
        return mutate(["set", "image"], kind, name, more)
    if verb == "create":
        return create_job(rest)
    if verb == "rollout":
        return rollout(rest)
    if verb == "port-forward":
        return port_forward(rest)
    print(f"fake kubectl: unsupported command {args}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
