#!/usr/bin/env bash
# The product as a user installs it: build the wheel, install it into a fresh virtual environment
# outside the checkout, and from there run `chartlight sandbox up`, `sandbox seed`, `demo` and
# `sandbox down` on non-default ports (WHEEL_CHECK_PORT, +1, +2, +3). Nothing from tests/ is on
# the path. The fresh environment reuses the locked third-party packages through a .pth line, as
# `make venv` does, so torch is not installed again. Run by .ci/run after `make test`; by hand:
#   .ci/wheel_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
PORT=${WHEEL_CHECK_PORT:-18280}
LOCK_HASH=$(sha256sum requirements.lock | cut -c1-16)
DEPS_ENV=${CACHE_DIR:-$HOME/.cache/chartlight}/deps-$LOCK_HASH
[ -f "$DEPS_ENV/.complete" ] || make venv
WORK=$(mktemp -d /tmp/chartlight-wheel-check.XXXXXX)
export CHARTLIGHT_SANDBOX_PORT=$PORT CHARTLIGHT_PACS_PORT=$((PORT + 1)) \
  CHARTLIGHT_SANDBOX_EHR_PORT=$((PORT + 2)) CHARTLIGHT_PORT=$((PORT + 3)) \
  CHARTLIGHT_SANDBOX_STATE_DIR=$WORK/state CHARTLIGHT_DATABASE_URL=sqlite:///$WORK/jobs.db \
  CHARTLIGHT_FHIR_BASE_URL=http://127.0.0.1:$PORT/fhir
CHARTLIGHT=$WORK/venv/bin/chartlight
cleanup() {
  [ -x "$CHARTLIGHT" ] && (cd "$WORK" && "$CHARTLIGHT" sandbox down >/dev/null 2>&1) || true
  rm -rf "$WORK"
}
trap cleanup EXIT
start=$(date +%s)

echo "== building the wheel"
"$DEPS_ENV/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" "$ROOT" 2>&1 | grep -v "^$" || true
WHEEL=$(ls "$WORK"/dist/chartlight-*.whl)
# The listing is read from a file: `unzip -l | grep -q` under pipefail fails whenever grep stops
# reading early and unzip gets SIGPIPE.
unzip -l "$WHEEL" > "$WORK/wheel-contents.txt"
for member in plugin/sandbox/ehr_server/server.py plugin/sandbox/hapi_launcher/pom.xml \
    plugin/sandbox/hapi_launcher/src/main/java/org/chartlight/sandbox/SandboxServer.java \
    plugin/engines/test_models/tiny_medasr.py smart_launch/templates/app_home.html; do
  grep -q " $member\$" "$WORK/wheel-contents.txt" || { echo "the wheel lacks $member"; exit 1; }
done
if grep -qE " tests/| target/" "$WORK/wheel-contents.txt"; then echo "the wheel holds tests/ or a build"; exit 1; fi

echo "== installing $(basename "$WHEEL") into a fresh environment in $WORK"
"$PYTHON" -m venv "$WORK/venv"
"$DEPS_ENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
  > "$("$WORK/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/chartlight-deps.pth"
"$WORK/venv/bin/python" -m pip install -q --no-deps --no-index "$WHEEL"
cd "$WORK"
"$WORK/venv/bin/python" - "$ROOT" <<'PY'
import importlib.util, sys
import plugin
assert not plugin.__file__.startswith(sys.argv[1]), f"plugin imported from the checkout: {plugin.__file__}"
assert importlib.util.find_spec("tests") is None, "tests/ is importable from the installed product"
print(f"   chartlight installed at {plugin.__file__.rsplit('/', 2)[0]}")
PY

echo "== chartlight sandbox up"
"$CHARTLIGHT" sandbox up
echo "== chartlight sandbox seed"
"$CHARTLIGHT" sandbox seed | tail -3
echo "== chartlight demo --test-models --json"
"$CHARTLIGHT" demo --test-models --json > demo.json 2> demo.log || { tail -40 demo.log; exit 1; }
"$WORK/venv/bin/python" - <<'PY'
import json
summary = json.load(open("demo.json"))
for name, result in summary["pipelines"].items():
    assert result["run"], f"{name} did not run: {result.get('reason')}"
    bad = [i for i in result["inputs"] if i["state"] != "succeeded"]
    assert result["inputs"] and not bad, f"{name}: {bad or 'no inputs'}"
    print(f"   {name}: {len(result['inputs'])} input(s) analysed")
assert summary["launch"]["ehr_page"].startswith("http://127.0.0.1:")
PY
echo "== chartlight sandbox down"
"$CHARTLIGHT" sandbox down
for p in $PORT $((PORT + 1)) $((PORT + 2)); do
  if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "port $p still answers after sandbox down"; exit 1; fi
done
echo "wheel check passed in $(( $(date +%s) - start )) s"
