"""The documentation site (mkdocs.yml, docs/): it builds with --strict, its reference pages cannot
drift from the code, and the README stays a short front page whose links all resolve (issue 18.1).

The site is built once per run into a temporary folder (a few seconds), by the same command
`make docs` serves it with; its generated pages (scripts/docs_hooks.py) are checked against the
code they come from, through a second route where there is one (`manage.py help`).
"""

from __future__ import annotations

import ast
import html
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live import ROOT, base_env, run_python

DOCS = ROOT / "docs"
README_LIMIT = 10 * 1024
# Pages scripts/docs_hooks.py adds at build time (links to them resolve in the built site).
GENERATED = {
    "reference/commands.md",
    "reference/endpoints.md",
    "reference/audit-events.md",
    "reference/openapi.json",
    "assets/bench-latest.png",
}


def docs_env(**extra: str) -> dict[str, str]:
    """Development settings with throwaway secrets (nothing is written into var/; the tests run
    on several pytest-xdist workers at once)."""
    return base_env(
        AUTHSERVER_MODE="development",
        SECRET_KEY=secrets.token_urlsafe(64),
        AUTHSERVER_KEY_ENCRYPTION_KEY=secrets.token_urlsafe(32),
        **extra,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT,
        check=False,
        env=docs_env(NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return folder


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


def test_site_builds_strict_and_is_self_contained(site):
    """`mkdocs build --strict` passes (broken internal links and anchors fail it), every nav page
    is there, and no page loads anything from another site (no CDN, no web fonts)."""
    for page in [
        "index.html",
        "getting-started/index.html",
        "guides/protect-fastapi-api/index.html",
        "guides/protect-express-api/index.html",
        "guides/sign-in-spa/index.html",
        "reference/environment/index.html",
        "concepts/threat-model/index.html",
    ]:
        assert (site / page).is_file(), page
    loads_remote = re.compile(
        r"""<(?:script|link|img|iframe)\b[^>]*(?:src|href)=["']?(?:https?:)?//"""
    )
    offenders = [
        str(page.relative_to(site))
        for page in site.rglob("*.html")
        for tag in re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", page.read_text())
        if loads_remote.search(tag) and 'rel="license"' not in tag
    ]
    assert offenders == []
    # Included files, not copies: the threat model page is SECURITY.md itself, the Django app
    # guide shows the demo app's views as they are (the code the browser test runs).
    assert "Reporting a vulnerability" in _text(site / "concepts/threat-model/index.html")
    views = (ROOT / "examples/webapp/webapp/views.py").read_text()
    shown = _text(site / "guides/sign-in-django-app/index.html")
    assert all(line.strip() in shown for line in views.splitlines() if line.strip())


def project_commands_from_manage_py_help() -> set[str]:
    """The commands `manage.py help` lists under the project's own apps (help names an app by
    its last module part, so [sessions] holds Django's clearsessions too: a command is the
    project's when its file is in the project's app)."""
    result = run_python("manage.py", "help", env=docs_env())
    assert result.returncode == 0, result.stderr
    commands, app = set(), None
    for line in result.stdout.splitlines():
        if match := re.fullmatch(r"\[([\w.]+)\]", line.strip()):
            app = match.group(1)
        elif app and line.startswith("    "):
            name = line.strip()
            if (ROOT / app / "management" / "commands" / f"{name}.py").is_file():
                commands.add(name)
    return commands


def test_every_management_command_is_in_the_reference(site):
    commands = project_commands_from_manage_py_help()
    assert {"create_user", "create_client", "rotate_signing_keys", "after_restore"} <= commands
    page = (site / "reference/commands/index.html").read_text()
    documented = set(re.findall(r'<h2 id="([a-z_]+)"', page))
    assert documented == commands
    # Each with its usage line, as its parser prints it.
    text = _text(site / "reference/commands/index.html")
    for command in commands:
        assert f"usage: manage.py {command}" in text, command


def test_every_audit_event_type_is_in_the_reference(site):
    from audit.events import EventType

    text = _text(site / "reference/audit-events/index.html")
    missing = [event.value for event in EventType if f"{event.value}" not in text]
    assert missing == []
    assert len(EventType) > 30


def test_endpoints_page_renders_every_operation_of_the_schema(site):
    """The endpoints page is the OpenAPI schema the server serves at /api/schema/, rendered: every
    path and method, every named schema; the schema itself is shipped beside it."""
    from authserver.api_docs import DEFAULT_API_VERSION, api_schema_document

    served = json.loads(api_schema_document(DEFAULT_API_VERSION, "json"))
    shipped = json.loads((site / "reference/openapi.json").read_text())
    assert shipped["paths"].keys() == served["paths"].keys()
    text = _text(site / "reference/endpoints/index.html")
    for path, item in served["paths"].items():
        for method in ("get", "post", "put", "patch", "delete"):
            if method in item:
                assert f"{method.upper()} {path}" in text, (method, path)
    for name in served.get("components", {}).get("schemas", {}):
        assert name in text
    assert "/api/v1/auth/login" in text


# --- Environment variables: docs/reference/environment.md against authserver/settings.py ---

# The helpers of settings.py that read the variable named by their first argument.
ENV_READERS = {"_bool", "_int", "_str", "_list", "_timeout_ms", "_command_timeout_ms"}


def _reads(node: ast.Call) -> bool:
    function = ast.unparse(node.func)
    return function in ENV_READERS | {"os.environ.get", "os.getenv"} or function.startswith("env.")


def variables_read(source: str) -> set[str]:
    """Every environment variable `source` (settings.py or its conf module) reads: the first
    argument of its reading helpers and of django-environ's `env.*`, a constant or the variable of
    a loop over constant names (`for _name in ("A", "B"): _str(_name)`); `_`-prefixed ones are
    internal (set by manage.py or gunicorn for their children)."""
    names = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and _reads(node):
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
        elif (
            isinstance(node, ast.For)
            and isinstance(node.target, ast.Name)
            and isinstance(node.iter, ast.Tuple | ast.List)
        ):
            loop_reads = any(
                isinstance(call, ast.Call)
                and call.args
                and _reads(call)
                and isinstance(call.args[0], ast.Name)
                and call.args[0].id == node.target.id
                for statement in node.body
                for call in ast.walk(statement)
            )
            if loop_reads:
                names |= {
                    item.value
                    for item in node.iter.elts
                    if isinstance(item, ast.Constant) and isinstance(item.value, str)
                }
    return {name for name in names if not name.startswith("_")}


def variables_documented(page: str) -> set[str]:
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", page, re.M))


def environment_reference_problems(sources: list[str], page: str) -> list[str]:
    read = set().union(*(variables_read(source) for source in sources))
    documented = variables_documented(page)
    return [
        f"{name}: read from the environment, not on the page" for name in sorted(read - documented)
    ] + [f"{name}: on the page, read nowhere" for name in sorted(documented - read)]


def test_environment_reference_lists_exactly_the_variables_settings_read():
    sources = [
        (ROOT / "authserver" / "settings.py").read_text(),
        (ROOT / "authserver" / "conf.py").read_text(),
    ]
    page = (DOCS / "reference" / "environment.md").read_text()
    assert environment_reference_problems(sources, page) == []
    assert {"SECRET_KEY", "DATABASE_URL", "AUTHSERVER_ISSUER", "EMAIL_URL"} <= variables_documented(
        page
    )
    # Both directions fail when they drift: a new setting nobody documented, a row for a setting
    # that was removed.
    new_setting = sources[0] + '\nAUTHSERVER_SHINY = _bool("AUTHSERVER_SHINY", False)\n'
    assert environment_reference_problems([new_setting, sources[1]], page) == [
        "AUTHSERVER_SHINY: read from the environment, not on the page"
    ]
    stale_row = page + "\n| `AUTHSERVER_GONE` | `1` | | Removed long ago. |\n"
    assert environment_reference_problems(sources, stale_row) == [
        "AUTHSERVER_GONE: on the page, read nowhere"
    ]


# --- The README: short, and every link in it and in the docs resolves ---

LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def broken_links(page: Path, text: str | None = None) -> list[str]:
    """Relative links of a Markdown page whose target is neither a file of the checkout nor a page
    the site generates. Anchors are left to mkdocs --strict (validation.anchors: warn)."""
    broken = []
    in_docs = DOCS in page.parents
    fence = False
    for line in (page.read_text() if text is None else text).splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        if fence:
            continue
        for match in LINK.finditer(line):
            target = (match.group(1) or match.group(2)).split("#", 1)[0]
            if not target or re.match(r"^[a-z]+:", target):
                continue
            resolved = (page.parent / target).resolve()
            generated = (
                resolved.is_relative_to(DOCS) and str(resolved.relative_to(DOCS)) in GENERATED
            )
            if not (resolved.exists() or generated):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif in_docs and not resolved.is_relative_to(DOCS) and not generated:
                broken.append(f"{page.relative_to(ROOT)}: {target} is outside docs/")
    return broken


def test_readme_is_a_short_front_page_whose_links_resolve():
    readme = ROOT / "README.md"
    assert readme.stat().st_size < README_LIMIT, f"README.md is {readme.stat().st_size} bytes"
    text = readme.read_text()
    assert "make run" in text and "make test" in text
    assert "docs/getting-started.md" in text
    assert broken_links(readme) == []
    pages = [readme, ROOT / "SECURITY.md", *DOCS.rglob("*.md")]
    assert [problem for page in pages for problem in broken_links(page)] == []


def test_link_check_catches_a_broken_link():
    page = DOCS / "getting-started.md"
    text = page.read_text() + "\n[gone](guides/no-such-page.md) [outside](../Makefile)\n"
    assert broken_links(page, text) == [
        "docs/getting-started.md: guides/no-such-page.md",
        "docs/getting-started.md: ../Makefile is outside docs/",
    ]
