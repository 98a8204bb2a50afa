"""The deploy files, checked as far as this machine allows (scripts/validate_deploy.py): schemas,
linters, `nginx -t`, `systemd-analyze verify`; and each check catches the mistake it is for."""

from __future__ import annotations

import shutil

import pytest

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
    unit = copy_deploy(tmp_path) / "systemd" / "authserver.service"
    unit.write_text(unit.read_text().replace("UMask=0077", "UMask=0077\nFrobnicate=yes"))
    assert "Frobnicate" in "\n".join(vd.check_systemd(unit).problems)


def test_every_setting_is_in_env_example_and_the_readme():
    """Operators configure from deploy/env.example and the README table: neither may miss one."""
    import re

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
