#!/usr/bin/env bash
# The DynamoDB conformance suite: boto3 + pytest against a fresh `shoal dev` cluster, then an
# AWS CLI smoke test and the AWS SDK for JavaScript v3 cases (js/) against another. Needs only python3 (with venv) and pip access; builds
# the shoal binary unless SHOAL_BIN names one.
#
#   router/conformance/run.sh [pytest arguments...]
#
# Environment: SHOAL_BIN (skip the build), CARGO_TARGET_DIR, CONFORMANCE_VENV (default
# target/conformance-venv), PYTHON (default python3), CONFORMANCE_TIMEOUT_S (whole pytest run,
# default 900), CONFORMANCE_REQUIRE_JS=1 (fail, not skip, when node cannot be had).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="${CONFORMANCE_VENV:-$root/target/conformance-venv}"
python="${PYTHON:-python3}"
started=$SECONDS

# 1. The venv, reused while requirements.txt is unchanged.
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$venv/.requirements.txt"; then
    echo "conformance: creating $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/.requirements.txt"
fi

# 2. The binary (debug: on two cores it builds much faster than release and serves the suite
# well within its time).
if [ -z "${SHOAL_BIN:-}" ]; then
    (cd "$root" && cargo build --locked -p shoal)
    export SHOAL_BIN="$target/debug/shoal"
fi
echo "conformance: shoal binary $SHOAL_BIN"

# 3. The suite. pytest.ini sets a 60 s timeout per test (pytest-timeout); the whole run is
# bounded too, and SIGTERM lets conftest.py stop its cluster.
cd "$here"
status=0
timeout --kill-after=30 "${CONFORMANCE_TIMEOUT_S:-900}" \
    "$venv/bin/python" -m pytest -p no:cacheprovider "$@" || status=$?

# 4. AWS CLI smoke test on a cluster of its own.
smoke_dir="$(mktemp -d -t shoal-awscli-XXXXXX)"
port="$("$venv/bin/python" -c 'import conftest; print(conftest._pick_base_port())')"
"$SHOAL_BIN" dev --data-dir "$smoke_dir/data" --port "$port" >"$smoke_dir/shoal-dev.log" 2>&1 &
dev_pid=$!
stop_dev() {
    kill -TERM "$dev_pid" 2>/dev/null || true
    # shoal dev stops its children within 10 s, then kills them.
    for _ in $(seq 1 150); do kill -0 "$dev_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$dev_pid" 2>/dev/null || true
    rm -rf "$smoke_dir"
}
trap stop_dev EXIT
"$venv/bin/python" - "$port" <<'PY'
import sys, time, conftest
deadline = time.monotonic() + conftest.STARTUP_TIMEOUT_S
while not conftest._healthy(int(sys.argv[1])):
    if time.monotonic() > deadline:
        sys.exit("shoal dev did not become healthy")
    time.sleep(0.2)
PY
export AWS_ACCESS_KEY_ID=AKIDSMOKE AWS_SECRET_ACCESS_KEY=smoke AWS_DEFAULT_REGION=us-east-1
export AWS_PAGER="" AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
aws() { "$venv/bin/aws" --endpoint-url "http://127.0.0.1:$port" --output json "$@"; }
smoke_fail() { echo "conformance: AWS CLI smoke test failed: $*" >&2; tail -20 "$smoke_dir/shoal-dev.log" >&2; exit 1; }
table=awscli-smoke
aws dynamodb create-table --table-name "$table" --billing-mode PAY_PER_REQUEST \
    --attribute-definitions AttributeName=pk,AttributeType=S --key-schema AttributeName=pk,KeyType=HASH \
    >/dev/null || smoke_fail create-table
aws dynamodb wait table-exists --table-name "$table" || smoke_fail wait table-exists
aws dynamodb put-item --table-name "$table" --item '{"pk": {"S": "cli"}, "n": {"N": "42"}}' \
    || smoke_fail put-item
got="$(aws dynamodb get-item --table-name "$table" --key '{"pk": {"S": "cli"}}' --consistent-read \
    --query 'Item.n.N' --output text)" || smoke_fail get-item
[ "$got" = "42" ] || smoke_fail "get-item returned '$got', not 42"
# JSON output: the CLI follows LastEvaluatedKey and sums Count over the pages (text output
# would print one Count per page).
count="$(aws dynamodb scan --table-name "$table" --query 'Count')" || smoke_fail scan
[ "$count" = "1" ] || smoke_fail "scan counted '$count', not 1"
# DynamoDB Streams through the CLI's own dynamodbstreams commands: the put above is the
# stream's first record once the stream is on (so enable it, then write again).
arn="$(aws dynamodb update-table --table-name "$table" \
    --stream-specification StreamEnabled=true,StreamViewType=NEW_IMAGE \
    --query 'TableDescription.LatestStreamArn' --output text)" || smoke_fail update-table stream
aws dynamodb put-item --table-name "$table" --item '{"pk": {"S": "cli"}, "n": {"N": "43"}}' \
    || smoke_fail put-item with a stream
listed="$(aws dynamodbstreams list-streams --table-name "$table" --query 'Streams[0].StreamArn' \
    --output text)" || smoke_fail list-streams
[ "$listed" = "$arn" ] || smoke_fail "list-streams listed '$listed', not '$arn'"
seen=""
for shard in $(aws dynamodbstreams describe-stream --stream-arn "$arn" \
        --query 'StreamDescription.Shards[].ShardId' --output text); do
    iterator="$(aws dynamodbstreams get-shard-iterator --stream-arn "$arn" --shard-id "$shard" \
        --shard-iterator-type TRIM_HORIZON --query ShardIterator --output text)" \
        || smoke_fail get-shard-iterator
    seen="$seen$(aws dynamodbstreams get-records --shard-iterator "$iterator" \
        --query 'Records[].dynamodb.NewImage.n.N' --output text)" || smoke_fail get-records
done
[ "$seen" = "43" ] || smoke_fail "the stream held '$seen', not the one change 43"
# Transactions through the CLI (which, like every SDK, fills ClientRequestToken itself): a
# transfer between two items, read back with transact-get-items; then one whose condition
# fails, which must change nothing and answer TransactionCanceledException.
aws dynamodb transact-write-items --transact-items '[
    {"Update": {"TableName": "'"$table"'", "Key": {"pk": {"S": "cli"}},
                "UpdateExpression": "SET n = n - :x", "ConditionExpression": "n >= :x",
                "ExpressionAttributeValues": {":x": {"N": "3"}}}},
    {"Put": {"TableName": "'"$table"'", "Item": {"pk": {"S": "other"}, "n": {"N": "3"}}}}]' \
    >/dev/null || smoke_fail transact-write-items
both="$(aws dynamodb transact-get-items --transact-items '[
    {"Get": {"TableName": "'"$table"'", "Key": {"pk": {"S": "cli"}}}},
    {"Get": {"TableName": "'"$table"'", "Key": {"pk": {"S": "other"}}}}]' \
    --query 'Responses[].Item.n.N' --output text)" || smoke_fail transact-get-items
[ "$both" = "40	3" ] || smoke_fail "transact-get-items read '$both', not 40 and 3"
if refused="$(aws dynamodb transact-write-items --transact-items '[
    {"Update": {"TableName": "'"$table"'", "Key": {"pk": {"S": "cli"}},
                "UpdateExpression": "SET n = n - :x", "ConditionExpression": "n >= :x",
                "ExpressionAttributeValues": {":x": {"N": "100"}}}},
    {"Delete": {"TableName": "'"$table"'", "Key": {"pk": {"S": "other"}}}}]' 2>&1)"; then
    smoke_fail "a transaction whose condition fails was applied"
fi
case "$refused" in
    *TransactionCanceledException*"[ConditionalCheckFailed, None]"*) ;;
    *) smoke_fail "a failed transaction answered: $refused" ;;
esac
got="$(aws dynamodb get-item --table-name "$table" --key '{"pk": {"S": "other"}}' --consistent-read \
    --query 'Item.n.N' --output text)" || smoke_fail get-item after a cancelled transaction
[ "$got" = "3" ] || smoke_fail "the cancelled transaction's delete was applied ('$got')"
aws dynamodb delete-table --table-name "$table" >/dev/null || smoke_fail delete-table
if aws dynamodb describe-table --table-name "$table" >/dev/null 2>&1; then
    smoke_fail "describe-table found the deleted table"
fi
echo "conformance: AWS CLI smoke test passed"

# 5. The AWS SDK for JavaScript v3 (js/, a few dozen cases with node's own test runner) on the
# same cluster: SDKs differ in what they validate and send. Node and npm are installed with
# apt-get when missing (CI has apt and runs as root); where that is impossible the cases are
# skipped with a message, unless CONFORMANCE_REQUIRE_JS=1 (.ci/run sets it), which fails the
# run instead: in CI a skip would be a check that cannot fail.
js_dir="$here/js"
node_usable() {
    command -v node >/dev/null && command -v npm >/dev/null &&
        node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'
}
install_node() {
    command -v apt-get >/dev/null || return 1
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        sudo -n true 2>/dev/null || return 1
        sudo="sudo -n"
    fi
    echo "conformance: installing nodejs and npm with apt-get"
    $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
}
if node_usable || { install_node && node_usable; }; then
    # npm ci only when the lockfile changed since the last install.
    if ! cmp -s "$js_dir/package-lock.json" "$js_dir/node_modules/.shoal-installed-lock"; then
        (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error) ||
            smoke_fail "npm ci of the JavaScript SDK failed"
        cp "$js_dir/package-lock.json" "$js_dir/node_modules/.shoal-installed-lock"
    fi
    if SHOAL_ENDPOINT="http://127.0.0.1:$port" timeout --kill-after=10 300 \
        node --test "$js_dir"/*.test.mjs; then
        echo "conformance: JavaScript SDK cases passed"
    else
        echo "conformance: JavaScript SDK cases failed" >&2
        status=1
    fi
elif [ "${CONFORMANCE_REQUIRE_JS:-0}" = 1 ]; then
    echo "conformance: node >= 18 and npm are needed for the JavaScript SDK cases and could not be installed" >&2
    status=1
else
    echo "conformance: SKIPPED the JavaScript SDK cases: node >= 18 and npm are not installed and apt-get could not install them (set CONFORMANCE_REQUIRE_JS=1 to make this an error)"
fi

echo "conformance: finished in $((SECONDS - started)) s (exit $status)"
exit "$status"
