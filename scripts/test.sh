#!/usr/bin/env bash
# Installs everything the tests need (Debian clients, Python packages), then runs the
# linters and the whole test suite. Safe to re-run; installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pair in aria2c:aria2 transmission-show:transmission-cli transmission-daemon:transmission-daemon \
            mktorrent:mktorrent nginx:nginx-light wrk:wrk opentracker:opentracker \
            redis-server:redis-server pg_ctlcluster:postgresql rclone:rclone s3cmd:s3cmd; do
  bin=${pair%%:*}; pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || [ -x "/usr/bin/$bin" ] || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'

python3 -m ruff check .
python3 -m ruff format --check .
python3 -m mypy
# The layers of docs/ARCHITECTURE.md (contracts in pyproject.toml).
lint-imports

# tests/scale starts PostgreSQL, Redis and moto itself; installed above, so fail, not skip.
export S3TORRENT_REQUIRE_ENGINES=1
python3 -m pytest -q -p no:cacheprovider tests "$@"
