#!/usr/bin/env python3
"""Check the deploy/ files as far as this machine allows, without Docker or a cluster.

    .venv/bin/python scripts/validate_deploy.py        # one line per check; exit 1 on a failure

- deploy/k8s/*.yaml: every document against the Kubernetes API schemas (kubernetes-validate,
  strict: unknown fields are errors), plus the rules README "Kubernetes" promises (probes,
  secret references, non-root, migration Job).
- deploy/docker-compose.yml: the Compose specification schema (check-jsonschema's vendored
  copy), plus consistency with nginx.conf (upstream names, the trusted proxy address).
- deploy/Dockerfile: hadolint, plus multi-stage / non-root / no build tools in the final stage.
- deploy/nginx.conf: `nginx -t` on a copy pointed at loopback ports and a throwaway certificate
  (skipped when nginx is not installed: apt-get install nginx).
- deploy/systemd/*.service, *.timer: `systemd-analyze verify` on copies whose programs point at
  this checkout's virtualenv (skipped without systemd-analyze); every job unit has a timer.
- scheduled jobs: the same manage.py command lines as systemd timers and as Kubernetes CronJobs
  (tests/deploy/test_deploy_files.py also parses each one with the command's own parser).

tests/deploy/test_deploy_files.py runs the same functions, so `make test` runs them too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Result:
    name: str
    problems: tuple[str, ...] = ()
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.skipped is None


def _tool(name: str) -> str | None:
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


# --- Kubernetes ------------------------------------------------------------------------------


def k8s_documents(directory: Path = DEPLOY / "k8s") -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


def _containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    template = spec.get("template", {}) if doc["kind"] in {"Deployment", "Job"} else {}
    return template.get("spec", {}).get("containers", [])


def _secret_keys(container: dict) -> set[str]:
    keys = set()
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            keys.add(ref["key"])
    return keys


def check_kubernetes(directory: Path = DEPLOY / "k8s") -> Result:
    import kubernetes_validate

    problems: list[str] = []
    docs = k8s_documents(directory)
    for path, doc in docs:
        try:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{path.name}: {doc.get('kind')}: {exc.message}")
    kinds: dict[str, dict] = {}
    for _, doc in docs:  # the first of each kind; Deployments are picked by name below
        kinds.setdefault(doc["kind"], doc)
    deployments = {doc["metadata"]["name"]: doc for _, doc in docs if doc["kind"] == "Deployment"}
    for wanted in (
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
    ):
        if wanted not in kinds:
            problems.append(f"no {wanted} manifest")
    deployment = deployments.get("authserver")
    if deployment is None:
        problems.append("no Deployment named authserver")
    worker = deployments.get("authserver-mail-worker")
    if worker is None:
        problems.append("no Deployment named authserver-mail-worker (manage.py deliver_email)")
    else:
        (container,) = _containers(worker)
        if container.get("command", [])[:3] != ["python", "manage.py", "deliver_email"]:
            problems.append("authserver-mail-worker: must run manage.py deliver_email")
        missing = {"SECRET_KEY", "DATABASE_URL", "EMAIL_URL"} - _secret_keys(container)
        if missing:
            problems.append(f"authserver-mail-worker: {sorted(missing)} must come from a Secret")
    if deployment:
        (container,) = _containers(deployment)
        if container.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
            problems.append("Deployment: readinessProbe must GET /readyz")
        if container.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
            problems.append("Deployment: livenessProbe must GET /healthz")
        missing = {"SECRET_KEY", "DATABASE_URL"} - _secret_keys(container)
        if missing:
            problems.append(f"Deployment: {sorted(missing)} must come from a Secret")
        pod = deployment["spec"]["template"]["spec"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append("Deployment: pods must run as non-root")
        if not any(v.get("secret", {}).get("secretName") for v in pod.get("volumes", [])):
            problems.append("Deployment: the key-encryption key must be a mounted Secret")
    for _, doc in docs:
        if doc["kind"] != "CronJob":
            continue
        name = doc["metadata"]["name"]
        if doc["spec"].get("concurrencyPolicy") != "Forbid":
            problems.append(f"CronJob {name}: concurrencyPolicy must be Forbid")
        pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"CronJob {name}: pods must run as non-root")
        for container in pod["containers"]:
            missing = {"SECRET_KEY", "DATABASE_URL"} - _secret_keys(container)
            if missing:
                problems.append(f"CronJob {name}: {sorted(missing)} must come from a Secret")
    cron_commands = {" ".join(argv) for _, argv in scheduled_jobs_kubernetes(directory)}
    if cron_commands != set(SCHEDULED_JOBS):
        problems.append(f"CronJobs {sorted(cron_commands)} != {sorted(SCHEDULED_JOBS)}")
    job = kinds.get("Job")
    if job:
        (container,) = _containers(job)
        if container.get("command", [])[-2:] != ["migrate", "--noinput"]:
            problems.append("Job: must run manage.py migrate --noinput")
    return Result("kubernetes manifests", tuple(problems))


# --- docker-compose --------------------------------------------------------------------------


def compose_document(path: Path = DEPLOY / "docker-compose.yml") -> dict:
    return yaml.safe_load(path.read_text())  # PyYAML resolves the `<<` merge keys


def nginx_upstream_servers(path: Path = DEPLOY / "nginx.conf") -> list[str]:
    block = re.search(r"upstream authserver \{(.*?)\}", path.read_text(), re.S)
    return re.findall(r"^\s*server\s+(\S+?)[\s;]", block.group(1), re.M) if block else []


def check_compose(path: Path = DEPLOY / "docker-compose.yml") -> Result:
    problems: list[str] = []
    tool = _tool("check-jsonschema")
    if tool is None:
        return Result("docker-compose.yml", skipped="check-jsonschema is not installed")
    result = _run([tool, "--builtin-schema", "vendor.compose-spec", str(path)])
    if result.returncode != 0:
        problems.append((result.stdout + result.stderr).strip())
    services = compose_document(path)["services"]
    instances = [
        name for name, svc in services.items() if svc.get("image", "").startswith("authserver")
    ]
    servers = {server.split(":")[0] for server in nginx_upstream_servers()}
    if not {"postgres", "redis", "nginx"} <= set(services):
        problems.append("compose must run postgres, redis and nginx")
    serving = {name for name in instances if "command" not in services[name]}
    if len(serving) < 2:
        problems.append(f"compose must run two authserver instances, found {sorted(serving)}")
    if servers != serving:
        problems.append(
            f"nginx upstream {sorted(servers)} != authserver services {sorted(serving)}"
        )
    nginx_ip = services["nginx"]["networks"]["backend"]["ipv4_address"]
    workers = [
        name
        for name in instances
        if services[name].get("command", [])[:3] == ["python", "manage.py", "deliver_email"]
    ]
    if not workers:
        problems.append("compose must run the email worker (manage.py deliver_email)")
    for name in workers:
        if "EMAIL_URL" not in services[name].get("environment", {}):
            problems.append(f"{name}: must be given EMAIL_URL")
    for name in serving:
        env = services[name]["environment"]
        if env.get("AUTHSERVER_TRUSTED_PROXIES") != nginx_ip:
            problems.append(f"{name}: AUTHSERVER_TRUSTED_PROXIES must be nginx's {nginx_ip}")
        if "migrate" not in services[name].get("depends_on", {}):
            problems.append(f"{name}: must wait for the migrate service")
    return Result("docker-compose.yml", tuple(problems))


# --- Dockerfile ------------------------------------------------------------------------------

BUILD_TOOLS = ("gcc", "build-essential", "make ", "g++", "clang", "-dev ")


def dockerfile_stages(path: Path = DEPLOY / "Dockerfile") -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def check_dockerfile(path: Path = DEPLOY / "Dockerfile") -> Result:
    problems: list[str] = []
    tool = _tool("hadolint")
    if tool is not None:
        result = _run([tool, "--no-color", str(path)])
        if result.returncode != 0:
            problems.append(result.stdout.strip() or result.stderr.strip())
    stages = dockerfile_stages(path)
    if len(stages) < 2:
        problems.append("Dockerfile must be multi-stage")
        return Result("Dockerfile", tuple(problems))
    final = stages[-1]
    users = [line.split(None, 1)[1] for line in final if line.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in {"root", "0"}:
        problems.append("the final stage must switch to a non-root USER")
    for line in final:
        if line.upper().startswith("RUN ") and any(tool in line for tool in BUILD_TOOLS):
            problems.append(f"build tools in the final stage: {line[:80]}")
        if line.upper().startswith("COPY ") and "--from=" not in line:
            problems.append(f"the final stage copies from the build context: {line[:80]}")
    if not any("collectstatic" in line for stage in stages for line in stage):
        problems.append("static files are not collected")
    if not any(line.upper().startswith("CMD ") and "gunicorn.conf.py" in line for line in final):
        problems.append("the image must run gunicorn with deploy/gunicorn.conf.py")
    return Result("Dockerfile", tuple(problems))


# --- nginx -----------------------------------------------------------------------------------


def nginx_local_config(
    text: str, *, upstreams: Iterable[str], http_port: int, https_port: int, tls_dir: Path
) -> str:
    """deploy/nginx.conf pointed at loopback: upstreams, listen ports, certificate folder."""
    replacements = [
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("/etc/nginx/tls/", f"{tls_dir}/"),
        # The redirect's published port pair (compose: 8080 -> 8443) becomes the test's pair.
        (':8080$" "$authserver_name:8443";', f':{http_port}$" "$authserver_name:{https_port}";'),
    ]
    for old, new in replacements:
        if old not in text:
            raise ValueError(f"nginx.conf no longer contains {old!r}: update the test copy")
        text = text.replace(old, new)
    for name, address in zip(nginx_upstream_servers(), upstreams, strict=True):
        text = text.replace(f"server {name}", f"server {address}", 1)
    return text


def make_test_certificate(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(directory / "privkey.pem"), "-out", str(directory / "fullchain.pem"),
        ]
    ).check_returncode()  # fmt: skip


def check_nginx(path: Path = DEPLOY / "nginx.conf") -> Result:
    nginx = shutil.which("nginx")
    if nginx is None:
        return Result("nginx.conf", skipped="nginx is not installed (apt-get install nginx)")
    if shutil.which("openssl") is None:
        return Result("nginx.conf", skipped="openssl is not installed")
    with tempfile.TemporaryDirectory(prefix="authserver-nginx-") as tmp:
        work = Path(tmp)
        make_test_certificate(work / "tls")
        conf = work / "nginx.conf"
        conf.write_text(
            nginx_local_config(
                path.read_text(),
                upstreams=["127.0.0.1:9", "127.0.0.1:9"],
                http_port=18080,
                https_port=18443,
                tls_dir=work / "tls",
            )
        )
        result = _run(
            [nginx, "-t", "-q", "-p", str(work), "-c", str(conf), "-g", f"pid {work}/pid;"]
        )
    if result.returncode != 0:
        return Result("nginx.conf", ((result.stderr or result.stdout).strip(),))
    return Result("nginx.conf")


# --- systemd ---------------------------------------------------------------------------------


SYSTEMD = DEPLOY / "systemd"
# Template units are verified as one instance of each.
SYSTEMD_INSTANCES = {"authserver@.service": "8000", "authserver-migrate@.service": "1.0.0"}
VENV_BINS = ("/opt/authserver/current/.venv/bin/", "/opt/authserver/releases/%i/.venv/bin/")


def check_systemd(directory: Path = SYSTEMD) -> Result:
    """`systemd-analyze verify` on every unit of deploy/systemd, their programs pointed at this
    checkout's virtualenv (systemd checks that they exist), template units as an instance."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return Result("systemd units", skipped="systemd-analyze is not installed")
    problems: list[str] = []
    units = sorted([*directory.glob("*.service"), *directory.glob("*.timer")])
    with tempfile.TemporaryDirectory(prefix="authserver-systemd-") as tmp:
        copies = []
        for path in units:
            text = path.read_text()
            if not any(prefix in text for prefix in VENV_BINS) and path.suffix == ".service":
                problems.append(f"{path.name}: ExecStart runs nothing from the release's .venv")
            for prefix in VENV_BINS:
                text = text.replace(prefix, f"{BIN}/")
            name = path.name
            if name in SYSTEMD_INSTANCES:
                name = name.replace("@.", f"@{SYSTEMD_INSTANCES[name]}.")
            copy = Path(tmp) / name
            copy.write_text(text)
            copies.append(str(copy))
        result = _run([analyze, "verify", *copies])
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or output:
        problems.append(output or f"exit {result.returncode}")
    for service, timer in scheduled_job_units(directory):
        if timer is None:
            problems.append(f"{service.name}: no timer of the same name")
    commands = {" ".join(argv) for _, argv in scheduled_jobs_systemd(directory)}
    if commands != set(SCHEDULED_JOBS):
        problems.append(f"systemd jobs {sorted(commands)} != {sorted(SCHEDULED_JOBS)}")
    return Result("systemd units", tuple(problems))


# --- scheduled jobs (systemd timers and Kubernetes CronJobs) ---------------------------------

# manage.py command lines that must run on a schedule, in both layouts.
SCHEDULED_JOBS = (
    "purge_expired_sessions",
    "purge_authorization_codes",
    "rotate_signing_keys --if-due",
    "purge_audit_events",
    "purge_account_links",
)


def unit_directives(text: str) -> dict[str, list[str]]:
    """KEY=VALUE lines of a unit file, each key's values in order (comments skipped)."""
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def scheduled_job_units(directory: Path = SYSTEMD) -> list[tuple[Path, Path | None]]:
    """(service, its timer or None) for every oneshot authserver job unit (not the templates)."""
    pairs = []
    for service in sorted(directory.glob("authserver-*.service")):
        if "@" in service.name or unit_directives(service.read_text()).get("Type") != ["oneshot"]:
            continue
        timer = service.with_suffix(".timer")
        pairs.append((service, timer if timer.exists() else None))
    return pairs


def scheduled_jobs_systemd(directory: Path = SYSTEMD) -> list[tuple[str, list[str]]]:
    """(unit name, manage.py arguments) of each job unit's ExecStart."""
    jobs = []
    for service, _ in scheduled_job_units(directory):
        (exec_start,) = unit_directives(service.read_text())["ExecStart"]
        argv = exec_start.split()
        jobs.append((service.name, argv[argv.index("manage.py") + 1 :]))
    return jobs


def scheduled_jobs_kubernetes(directory: Path = DEPLOY / "k8s") -> list[tuple[str, list[str]]]:
    jobs = []
    for _, doc in k8s_documents(directory):
        if doc["kind"] == "CronJob":
            pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            argv = container.get("command", [])
            jobs.append((doc["metadata"]["name"], argv[argv.index("manage.py") + 1 :]))
    return jobs


CHECKS = (check_kubernetes, check_compose, check_dockerfile, check_nginx, check_systemd)


def main() -> int:
    failed = False
    for check in CHECKS:
        result = check()
        if result.skipped:
            print(f"skipped {result.name}: {result.skipped}")
        elif result.problems:
            failed = True
            print(f"FAILED  {result.name}:")
            for problem in result.problems:
                print("    " + problem.replace("\n", "\n    "))
        else:
            print(f"ok      {result.name}")
    print("not run here: docker build, docker compose up, kubectl apply (no engine, no cluster)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
