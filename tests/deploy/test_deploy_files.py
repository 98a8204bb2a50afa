"""The deploy files, checked as far as this machine allows (scripts/validate_deploy.py): schemas,
linters, `nginx -t`, `systemd-analyze verify`; and each check catches the mistake it is for."""

from __future__ import annotations

import re
import shutil

import pytest
from django.core.management import CommandError

from tests.deploy.validate import validate_deploy as vd

DEPLOY = vd.DEPLOY


def assert_passes(result) -> None:
    if result.skipped:
        pytest.skip(result.skipped)
    assert not result.problems, "\n".join(result.problems)


def test_kubernetes_manifests_match_the_api_schema_and_our_rules():
    assert_passes(vd.check_kubernetes())


def test_compose_file_matches_the_compose_specification_and_nginx():
    assert_passes(vd.check_compose())


def test_dockerfile_is_multi_stage_non_root_and_lint_clean():
    assert_passes(vd.check_dockerfile())


def test_nginx_conf_passes_nginx_t():
    assert_passes(vd.check_nginx())


def test_systemd_unit_passes_systemd_analyze_verify():
    assert_passes(vd.check_systemd())


# --- the checks fail when the rule is broken ---------------------------------------------------


def copy_deploy(tmp_path):
    target = tmp_path / "deploy"
    shutil.copytree(DEPLOY, target)
    return target


def test_kubernetes_check_catches_a_missing_probe_and_an_unknown_field(tmp_path):
    k8s = copy_deploy(tmp_path) / "k8s"
    deployment = (k8s / "deployment.yaml").read_text()
    (k8s / "deployment.yaml").write_text(
        deployment.replace("path: /readyz", "path: /healthz").replace(
            "revisionHistoryLimit: 5", "revisionHistoryLimit: 5\n  replicaz: 3"
        )
    )
    problems = "\n".join(vd.check_kubernetes(k8s).problems)
    assert "readinessProbe must GET /readyz" in problems
    assert "replicaz" in problems


def test_kubernetes_check_catches_a_secret_in_plain_env(tmp_path):
    k8s = copy_deploy(tmp_path) / "k8s"
    text = (k8s / "deployment.yaml").read_text()
    plain = text.replace(
        """            - name: SECRET_KEY
              valueFrom:
                secretKeyRef:
                  name: authserver
                  key: SECRET_KEY""",
        """            - name: SECRET_KEY
              value: not-a-secret-anymore""",
    )
    assert plain != text
    (k8s / "deployment.yaml").write_text(plain)
    assert "must come from a Secret" in "\n".join(vd.check_kubernetes(k8s).problems)


def test_dockerfile_check_catches_root_and_build_tools_in_the_final_stage(tmp_path):
    dockerfile = copy_deploy(tmp_path) / "Dockerfile"
    text = dockerfile.read_text()
    dockerfile.write_text(
        text.replace(
            "USER 10001:10001", "USER root\nRUN apt-get install -y --no-install-recommends gcc"
        )
    )
    problems = "\n".join(vd.check_dockerfile(dockerfile).problems)
    assert "non-root USER" in problems
    assert "build tools in the final stage" in problems


def test_compose_check_catches_a_wrong_trusted_proxy(tmp_path):
    compose = copy_deploy(tmp_path) / "docker-compose.yml"
    compose.write_text(
        compose.read_text().replace(
            "AUTHSERVER_TRUSTED_PROXIES: 10.89.0.10", "AUTHSERVER_TRUSTED_PROXIES: 0.0.0.0/0"
        )
    )
    assert "must be nginx's 10.89.0.10" in "\n".join(vd.check_compose(compose).problems)


def test_nginx_check_catches_a_broken_config(tmp_path):
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    conf = copy_deploy(tmp_path) / "nginx.conf"
    conf.write_text(conf.read_text().replace("proxy_pass http://authserver;", "proxy_pass;"))
    assert vd.check_nginx(conf).problems


def test_systemd_check_catches_an_unknown_directive(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    systemd = copy_deploy(tmp_path) / "systemd"
    unit = systemd / "authserver@.service"
    unit.write_text(unit.read_text().replace("UMask=0077", "UMask=0077\nFrobnicate=yes"))
    timer = systemd / "authserver-purge-codes.timer"
    timer.write_text(timer.read_text().replace("OnCalendar=hourly", "OnCalendar=hourlyy"))
    problems = "\n".join(vd.check_systemd(systemd).problems)
    assert "Frobnicate" in problems
    assert "hourlyy" in problems


def test_scheduled_job_checks_catch_a_missing_job(tmp_path):
    deploy = copy_deploy(tmp_path)
    (deploy / "systemd" / "authserver-purge-audit.timer").unlink()
    text = (deploy / "k8s" / "cronjobs.yaml").read_text()
    (deploy / "k8s" / "cronjobs.yaml").write_text(
        text.replace('"rotate_signing_keys", "--if-due"', '"rotate_signing_keys"')
    )
    assert "authserver-purge-audit.service: no timer" in "\n".join(
        vd.check_systemd(deploy / "systemd").problems
    )
    assert "CronJobs" in "\n".join(vd.check_kubernetes(deploy / "k8s").problems)


def command_line_problem(argv: list[str]) -> str | None:
    """Why `manage.py *argv` would not start: an unknown command or flag (its own parser)."""
    from django.core.management import get_commands, load_command_class

    name, *flags = argv
    app = get_commands().get(name)
    if app is None:
        return f"no command {name}"
    parser = load_command_class(app, name).create_parser("manage.py", name)
    try:
        parser.parse_args(flags)
    except (CommandError, SystemExit) as exc:
        return f"{' '.join(argv)}: {exc}"
    return None


def test_every_scheduled_job_is_a_real_command_line():
    """The timers and CronJobs run commands that exist, with flags their parsers accept."""
    jobs = vd.scheduled_jobs_systemd() + vd.scheduled_jobs_kubernetes()
    assert len(jobs) == 2 * len(vd.SCHEDULED_JOBS)
    assert [problem for _, argv in jobs if (problem := command_line_problem(argv))] == []
    # And a wrong flag or command is caught.
    assert "--if-overdue" in command_line_problem(["rotate_signing_keys", "--if-overdue"])
    assert command_line_problem(["purge_everything"]) == "no command purge_everything"


def test_every_setting_is_in_env_example_and_the_readme():
    """Operators configure from deploy/env.example and the README table: neither may miss one."""
    from tests.live import ROOT

    settings_text = (ROOT / "authserver" / "settings.py").read_text()
    names = set(re.findall(r'_(?:str|int|bool|list)\(\s*"([A-Z][A-Z0-9_]+)"', settings_text))
    env_example = (DEPLOY / "env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    ours = {
        "AUTHSERVER_METRICS_ALLOWED_IPS",
        "AUTHSERVER_METRICS_TOKEN",
        "AUTHSERVER_METRICS_DIR",
        "AUTHSERVER_LOG_FORMAT",
        "AUTHSERVER_BIND",
        "AUTHSERVER_WORKERS",
        "AUTHSERVER_THREADS",
        "AUTHSERVER_WORKER_TIMEOUT",
        "AUTHSERVER_GRACEFUL_TIMEOUT",
        "AUTHSERVER_KEEPALIVE",
        "AUTHSERVER_MAX_REQUESTS",
    }
    assert ours <= names
    for name in sorted(ours):
        assert re.search(rf"^#?\s*{name}=", env_example, re.M), f"{name} not in env.example"
        assert f"`{name}`" in readme, f"{name} not in README"


# env.example values that are a site's own (placeholders), not defaults the README states;
# values naming example.com or "change-me" are placeholders too.
SITE_SPECIFIC = {
    "ALLOWED_HOSTS",
    "AUTHSERVER_ISSUER",
    "DATABASE_URL",
    "REDIS_URL",
    "AUTHSERVER_TRUSTED_PROXIES",
    "AUTHSERVER_KEY_ENCRYPTION_KEY_FILE",
    "AUTHSERVER_DEFAULT_AUDIENCE",
}


def env_example_disagreements(env_example: str, readme: str) -> list[str]:
    """Variables whose value in env.example is neither the README's default nor its production
    value, and explanations of a `0` default that differ (AUTHSERVER_WORKERS)."""
    rows: dict[str, list[str]] = {}
    for line in readme.splitlines():
        match = re.match(r"\| `([A-Z][A-Z0-9_]+)` \|(.*)", line)
        if match and match.group(1) not in rows:
            rows[match.group(1)] = match.group(2).split("|")
    problems = []
    for match in re.finditer(r"^(#?)\s*([A-Z][A-Z0-9_]+)=(.*)$", env_example, re.M):
        commented, name, value = match.group(1), match.group(2), match.group(3).strip()
        placeholder = re.search(r"example\.com|change-me", value, re.I) or name in SITE_SPECIFIC
        if name not in rows:
            problems.append(f"{name}: not in the README table")
        elif commented and rows[name][0].strip() == "unset":
            continue  # an optional setting, shown with an example value
        elif value and not placeholder:
            default, production = rows[name][0], rows[name][1]
            if f"`{value}`" not in default + production:
                problems.append(
                    f"{name}={value}: README says {default.strip()} / {production.strip()}"
                )
    workers = re.search(r"`0` \(= ([^)]*)\)", rows.get("AUTHSERVER_WORKERS", [""])[0])
    if workers and workers.group(1) not in env_example:
        problems.append(f"AUTHSERVER_WORKERS: env.example does not say 0 = {workers.group(1)}")
    return problems


def test_env_example_and_the_readme_agree():
    """Each value in deploy/env.example is the README's default or production value (the worker
    default and the metrics folder used to differ)."""
    from tests.live import ROOT

    env_example = (DEPLOY / "env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    assert env_example_disagreements(env_example, readme) == []
    # The check fails when they drift.
    drifted = env_example.replace("AUTHSERVER_THREADS=4", "AUTHSERVER_THREADS=8").replace(
        "one per CPU", "2 x CPUs + 1"
    )
    problems = "\n".join(env_example_disagreements(drifted, readme))
    assert "AUTHSERVER_THREADS=8" in problems
    assert "AUTHSERVER_WORKERS" in problems
