#!/usr/bin/env bash
# Install authserver on a Debian host as a release under /opt/authserver (README "Host install").
#
#   deploy/install.sh [--version V] [--units]   as root, from a checkout or unpacked release:
#       1. the service user `authserver` (system account, no shell, no home);
#       2. /etc/authserver/authserver.env from deploy/env.example if there is none (then stop:
#          edit it and run again);
#       3. the code in /opt/authserver/releases/V (owned by root, read-only to the service);
#       4. its virtualenv, /opt/authserver/releases/V/.venv, from requirements/prod.txt;
#       5. `manage.py check --deploy` and `collectstatic`, with the environment file;
#       6. with --units: the systemd units and timers into /etc/systemd/system.
#     It never migrates and never switches the running release: see the steps it prints.
#   deploy/install.sh --activate V     point /opt/authserver/current at release V (atomic);
#                                      also the rollback: activate the previous release
#   deploy/install.sh --list           the releases, and which one is current
#   deploy/install.sh --manage CMD...  manage.py CMD of the current release, as the service
#                                      user, with only the environment file's variables (e.g.
#                                      --manage after_restore; --manage rotate_signing_keys --list)
#
# Options: --prefix DIR (/opt/authserver), --env-file FILE (/etc/authserver/authserver.env),
# --user NAME (authserver), --python PYTHON (python3, 3.11+), --source DIR (this checkout),
# --no-user (do not create the user or change owners: an unprivileged trial install).
# manage.py runs as systemd would run it: only the variables of the environment file, never the
# caller's (tests/deploy/test_host_install.py follows these steps into a temporary prefix).
set -euo pipefail
umask 022

prefix=/opt/authserver
env_file=/etc/authserver/authserver.env
user=authserver
python=python3
source_dir="$(cd "$(dirname "$0")/.." && pwd)"
version=""
action=install
units=0
make_user=1

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --env-file) env_file="$2"; shift 2 ;;
    --user) user="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --source) source_dir="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --units) units=1; shift ;;
    --no-user) make_user=0; shift ;;
    --activate) action=activate; version="$2"; shift 2 ;;
    --list) action=list; shift ;;
    --manage) action=manage; shift; break ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

valid_version() { [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$ ]]; }

# The environment file as `env` arguments, read the way systemd reads EnvironmentFile=: KEY=VALUE
# lines, `#` and `;` comments, one pair of surrounding quotes removed.
env_args=()
load_env_file() {
  local line key value
  env_args=(PATH=/usr/local/bin:/usr/bin:/bin "HOME=${HOME:-/nonexistent}" LANG=C.UTF-8)
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line#"${line%%[![:space:]]*}"}"
    case "$line" in ''|'#'*|';'*) continue ;; esac
    [[ "$line" == *=* ]] || die "$env_file: not KEY=VALUE: ${line%%=*}"
    key="${line%%=*}"
    value="${line#*=}"
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then value="${BASH_REMATCH[1]}"; fi
    [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "$env_file: bad variable name $key"
    env_args+=("$key=$value")
  done < "$env_file"
}

manage() {  # manage.py of release $release, with only the environment file's variables
  (cd "$release" && env -i "${env_args[@]}" "$release/.venv/bin/python" manage.py "$@")
}

case "$action" in
  manage)
    [ $# -gt 0 ] || die "--manage needs a manage.py command"
    [ -f "$env_file" ] || die "no environment file $env_file"
    release="$(cd "$prefix/current" 2>/dev/null && pwd -P)" || die "no $prefix/current (--activate first)"
    load_env_file
    if [ "$make_user" = 1 ] && [ "$(id -u)" = 0 ]; then
      cd "$release" && exec runuser -u "$user" -- env -i "${env_args[@]}" \
        "$release/.venv/bin/python" manage.py "$@"
    fi
    manage "$@"
    exit $?
    ;;
  list)
    current="$(readlink "$prefix/current" 2>/dev/null || true)"
    for dir in "$prefix"/releases/*/; do
      [ -d "$dir" ] || continue
      name="$(basename "$dir")"
      if [ "releases/$name" = "$current" ]; then echo "$name (current)"; else echo "$name"; fi
    done
    exit 0
    ;;
  activate)
    valid_version "$version" || die "bad release name: $version"
    [ -x "$prefix/releases/$version/.venv/bin/gunicorn" ] \
      || die "no installed release $version in $prefix/releases (see --list)"
    previous="$(readlink "$prefix/current" 2>/dev/null || echo none)"
    # A new symlink renamed over the old one: `current` is never missing, not even briefly.
    ln -sfn "releases/$version" "$prefix/.current.new"
    mv -Tf "$prefix/.current.new" "$prefix/current"
    echo "current: $previous -> releases/$version"
    echo "now restart the instances one at a time (README \"Host install\"), for each PORT:"
    echo "  mark 127.0.0.1:PORT down in nginx's upstream; systemctl reload nginx"
    echo "  systemctl restart authserver@PORT; curl -fsS http://127.0.0.1:PORT/readyz"
    echo "  remove the down mark; systemctl reload nginx"
    echo "then: systemctl restart authserver-mail-worker"
    exit 0
    ;;
esac

# --- install ---------------------------------------------------------------------------------
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || die "$python is older than Python 3.11"
[ -f "$source_dir/manage.py" ] && [ -f "$source_dir/requirements/prod.txt" ] \
  || die "$source_dir is not an authserver checkout"
if [ -z "$version" ]; then
  version="$(git -C "$source_dir" describe --tags --always --dirty 2>/dev/null || date -u +%Y%m%d%H%M%S)"
fi
valid_version "$version" || die "bad release name: $version"
release="$prefix/releases/$version"
[ -e "$release" ] && die "$release exists: choose another --version (or remove it)"

if [ "$make_user" = 1 ]; then
  [ "$(id -u)" = 0 ] || die "run as root (or with --no-user for a trial install)"
  if ! getent passwd "$user" >/dev/null; then
    useradd --system --user-group --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin "$user"
    echo "created the system user $user"
  fi
fi

if [ ! -f "$env_file" ]; then
  if [ "$make_user" = 1 ]; then
    install -d -m 0750 -o root -g "$user" "$(dirname "$env_file")"
    install -m 0640 -o root -g "$user" "$source_dir/deploy/env.example" "$env_file"
  else
    install -d -m 0700 "$(dirname "$env_file")"
    install -m 0600 "$source_dir/deploy/env.example" "$env_file"
  fi
  die "wrote $env_file from deploy/env.example: fill in the REQUIRED values, then run again"
fi
load_env_file

echo "installing release $version into $release"
install -d -m 0755 "$prefix" "$prefix/releases"
install -d -m 0755 "$release"
# A failed install leaves nothing behind to be activated by mistake.
trap 'rm -rf "$release"; echo "install.sh: failed; $release removed" >&2' ERR
tar -C "$source_dir" -cf - \
  --exclude=./.git --exclude=./.venv --exclude=./var --exclude=./staticfiles \
  --exclude=./node_modules --exclude='*/__pycache__' --exclude=./.pytest_cache \
  --exclude=./.ruff_cache --exclude=./.env . | tar -C "$release" -xf -
# Built where it will live: the venv's scripts name their interpreter by absolute path.
"$python" -m venv "$release/.venv"
"$release/.venv/bin/pip" install --quiet --disable-pip-version-check \
  -r "$release/requirements/prod.txt"

manage check --deploy --fail-level WARNING
manage collectstatic --noinput --verbosity 0
if [ -e "$release/var" ]; then
  echo "install.sh: manage.py wrote development files into $release/var:" \
    "$env_file is not a production environment (AUTHSERVER_MODE=production)" >&2
  false  # the ERR trap removes the release
fi
if [ "$make_user" = 1 ]; then
  chown -R root:root "$release"
fi
chmod -R go-w "$release"
trap - ERR

if [ "$units" = 1 ]; then
  install -m 0644 "$release"/deploy/systemd/*.service "$release"/deploy/systemd/*.timer /etc/systemd/system/
  if command -v systemctl >/dev/null 2>&1; then systemctl daemon-reload; fi
  echo "installed the systemd units and timers into /etc/systemd/system"
fi

cat <<EOF
release $version is installed (not running yet). Next:
  systemctl start authserver-migrate@$version      # migrations, with $env_file
  $release/deploy/install.sh --prefix $prefix --activate $version
  first install: systemctl enable --now authserver@8000 authserver@8001 authserver-mail-worker \\
      authserver-purge-sessions.timer authserver-purge-codes.timer \\
      authserver-rotate-keys.timer authserver-purge-audit.timer authserver-purge-links.timer
  upgrade: drain, restart and readd authserver@8000, then @8001 (see --activate's output),
    then systemctl restart authserver-mail-worker
EOF
