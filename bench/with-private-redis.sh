#!/usr/bin/env bash
# Runs bench/run.js against a private redis-server (its own port, nothing else on it) and
# prints that Redis's CPU seconds (INFO cpu, user + sys) and script calls during the run, so
# the Redis CPU per request of the features(redis) target can be set beside the gateway's.
# usage: bench/with-private-redis.sh [bench/run.js options...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
rpid=$!
trap 'kill $rpid 2>/dev/null; wait $rpid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
cpu() { redis-cli -p "$port" INFO cpu | awk -F: '/^used_cpu_(user|sys):/ {s += $2} END {printf "%.3f", s}'; }
calls() { redis-cli -p "$port" INFO commandstats | awk -F'[=,:]' '/^cmdstat_(evalsha|eval):/ {c += $3} END {print c + 0}'; }
c0=$(cpu); k0=$(calls)
node bench/run.js --redis-url "redis://127.0.0.1:$port" "$@"
c1=$(cpu); k1=$(calls)
echo "redis: cpu_s=$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.3f", b - a}') script_calls=$((k1 - k0))"
