"""MkDocs hooks (mkdocs.yml `hooks:`): the reference pages generated from the code at build time.

- reference/commands.md: every management command of the project's own apps, with its `--help`;
- reference/endpoints.md: the OpenAPI schema (/api/schema/) rendered as Markdown, and the schema
  itself as a download (openapi.json), so the site needs nothing from a CDN;
- reference/audit-events.md: every audit event type of audit/events.py;
- assets/bench-latest.png: the benchmark chart (bench/results/latest.png) of the performance
  page.

Django is set up with the development settings (as `make run` does, with throwaway secrets when
none are set); no database is touched.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def _django() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authserver.settings")
    # Throwaway secrets when none are set: the build signs and decrypts nothing, and development
    # mode would otherwise write them into var/ (racing any other process doing the same).
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))
    os.environ.setdefault("AUTHSERVER_KEY_ENCRYPTION_KEY", secrets.token_urlsafe(32))
    import django

    django.setup()


def project_commands() -> dict[str, str]:
    """{command: app module} for the commands of the project's own apps (not Django's, not
    third-party), as `manage.py help` lists them under the project's app names."""
    from django.core.management import get_commands

    return {
        name: app
        for name, app in get_commands().items()
        if isinstance(app, str) and (ROOT / app.replace(".", "/")).is_dir()
    }


def commands_page() -> str:
    from django.core.management import load_command_class

    out = [
        "# Management commands",
        "",
        "Every `manage.py` command of authserver's own apps, with the help its parser prints",
        "(generated from the code when the site is built). Run them as",
        "`.venv/bin/python manage.py COMMAND` (development) or with the production environment,",
        "e.g. `docker compose exec authserver python manage.py COMMAND`. Scheduled ones are listed",
        "in [Host install](../guides/host-install.md#scheduled-jobs).",
        "",
    ]
    for name, app in sorted(project_commands().items()):
        command = load_command_class(app, name)
        parser = command.create_parser("manage.py", name)
        help_text = parser.format_help()
        # Django's common options (--verbosity, --settings, ...) are the same for every command.
        out += [
            f"## `{name}`",
            "",
            f"App `{app}`. {command.help}",
            "",
            "```text",
            help_text,
            "```",
            "",
        ]
    return "\n".join(out)


def audit_page() -> str:
    from audit.events import EventType

    out = [
        "# Audit event types",
        "",
        "The `event_type` of every audit record (the admin's Audit events list, the",
        "`authserver.audit` log lines); generated from `audit/events.py` when the site is built.",
        "Names are stable: dashboards and alerts may key on them. How the trail is kept,",
        "partitioned and purged: [Login protection and audit](../concepts/login-protection.md).",
        "",
        "| Event type | Meaning |",
        "|---|---|",
    ]
    out += [f"| `{event.value}` | {event.label} |" for event in EventType]
    return "\n".join(out) + "\n"


def openapi_schema() -> dict:
    from authserver.api_docs import DEFAULT_API_VERSION, api_schema_document

    return json.loads(api_schema_document(DEFAULT_API_VERSION, "json"))


def _schema_name(schema: dict) -> str:
    """A schema's name, linked to its section of the Schemas part of the page."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if schema.get("type") == "array":
        return f"array of {_schema_name(schema.get('items', {}))}"
    if "oneOf" in schema or "anyOf" in schema:
        return " or ".join(_schema_name(part) for part in schema.get("oneOf", schema.get("anyOf")))
    return schema.get("type", "object")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def endpoints_page(schema: dict) -> str:
    info = schema.get("info", {})
    out = [
        "# HTTP endpoints (OpenAPI)",
        "",
        f"{_cell(info.get('title', 'authserver'))}, version {info.get('version', '')}: rendered",
        "from the OpenAPI schema the server serves at `/api/schema/` (when `AUTHSERVER_API_DOCS`",
        "allows it), generated when this site is built. The schema itself:",
        "[openapi.json](openapi.json).",
        "",
    ]
    if info.get("description"):
        out += [info["description"], ""]
    by_tag: dict[str, list[tuple[str, str, dict]]] = {}
    for path, item in schema.get("paths", {}).items():
        for method in HTTP_METHODS:
            if method in item:
                operation = item[method]
                tag = (operation.get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append((path, method, operation))
    for tag, operations in by_tag.items():
        out += [f"## {tag}", ""]
        for path, method, operation in operations:
            out += [f"### `{method.upper()} {path}`", ""]
            if operation.get("summary"):
                out += [f"**{_cell(operation['summary'])}**", ""]
            if operation.get("description"):
                out += [operation["description"].strip(), ""]
            parameters = operation.get("parameters", [])
            if parameters:
                out += ["| Parameter | In | Required | Description |", "|---|---|---|---|"]
                out += [
                    f"| `{p['name']}` | {p.get('in', '')} | {'yes' if p.get('required') else 'no'}"
                    f" | {_cell(p.get('description', ''))} |"
                    for p in parameters
                ]
                out.append("")
            body = operation.get("requestBody", {}).get("content", {})
            if body:
                kinds = ", ".join(
                    f"`{media}` ({_schema_name(v.get('schema', {}))})" for media, v in body.items()
                )
                out += [f"Request body: {kinds}", ""]
            responses = operation.get("responses", {})
            if responses:
                out += ["| Status | Description | Body |", "|---|---|---|"]
                for status, response in responses.items():
                    content = response.get("content", {})
                    shape = ", ".join(_schema_name(v.get("schema", {})) for v in content.values())
                    out.append(f"| {status} | {_cell(response.get('description', ''))} | {shape} |")
                out.append("")
    components = schema.get("components", {}).get("schemas", {})
    if components:
        out += ["## Schemas", ""]
        for name, component in components.items():
            out += [f"### {name}", ""]
            if component.get("description"):
                out += [_cell(component["description"]), ""]
            properties = component.get("properties", {})
            required = set(component.get("required", []))
            if properties:
                out += ["| Field | Type | Required | Description |", "|---|---|---|---|"]
                for field, spec in properties.items():
                    needed = "yes" if field in required else "no"
                    out.append(
                        f"| `{field}` | {_schema_name(spec)} | {needed}"
                        f" | {_cell(spec.get('description', ''))} |"
                    )
                out.append("")
            elif component.get("enum"):
                out += ["One of: " + ", ".join(f"`{v}`" for v in component["enum"]), ""]
    return "\n".join(out) + "\n"


def on_files(files: Files, config) -> Files:
    _django()
    schema = openapi_schema()
    generated = {
        "reference/commands.md": commands_page(),
        "reference/audit-events.md": audit_page(),
        "reference/endpoints.md": endpoints_page(schema),
        "reference/openapi.json": json.dumps(schema, indent=2),
    }
    for path, content in generated.items():
        files.append(File.generated(config, path, content=content))
    chart = ROOT / "bench" / "results" / "latest.png"
    files.append(File.generated(config, "assets/bench-latest.png", abs_src_path=str(chart)))
    return files
