#!/bin/bash
# Instructions per sign-in, repeatable on a busy machine (unlike CPU time).
#
#   examples/loadflow/callgrind.sh <sqlite|pg> <full|second-step> <seconds> <outdir>
#
# After `cargo build --release --examples --bins`. Runs target/release/tessera under
# valgrind's callgrind with argon2 made nearly free (so the flow's own work shows), zeroes
# the counters when the first measured request reaches the server, drives it with loadflow
# (--url mode), dumps, and prints instructions per completed flow (or pair), counted from
# the server's own request log (GET /home 200 lines after the zero point). `pg` uses a
# fresh database on postgres://postgres@127.0.0.1:5432 (trust auth), dropped afterwards.
# USERS (default 1500) sets how many users loadflow seeds. Open the profile with
# `callgrind_annotate --inclusive=yes <outdir>/callgrind.out.1`.
set -euo pipefail
WT=$(cd "$(dirname "$0")/../.." && pwd); DB=$1; MODE=$2; SECS=$3; OUT=$4
mkdir -p "$OUT"; rm -f "$OUT"/callgrind.out*
BIN=$WT/target/release/tessera
LF=$WT/target/release/examples/loadflow
export ENCRYPTION_KEY=$(head -c32 /dev/urandom | base64)
export TRUSTED_PROXIES=127.0.0.1 RATE_LIMIT_LOGIN_PER_IP=10000 RATE_LIMIT_SECOND_FACTOR_PER_IP=10000 RATE_LIMIT_PASSWORD_FAILURES_PER_ACCOUNT=10000
export ARGON2_MEMORY_KIB=8 ARGON2_ITERATIONS=1 ARGON2_PARALLELISM=1
DATA=$(mktemp -d /tmp/cgdata.XXXX)
export DATA_DIR=$DATA
if [ "$DB" = pg ]; then
  NAME=cg_$(date +%s%N | tail -c 8)
  psql -q -h 127.0.0.1 -U postgres -d test -c "CREATE DATABASE $NAME" >/dev/null
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$NAME?sslmode=disable"
else
  export DATABASE_URL=$DATA/tessera.db
fi
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
export BIND=127.0.0.1:$PORT
LOG=$OUT/server.log
valgrind --tool=callgrind --callgrind-out-file=$OUT/callgrind.out --dump-instr=no \
  "$BIN" serve > $LOG 2>&1 &
VPID=$!
for i in $(seq 1 300); do curl -sf http://127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.2; done
"$LF" --url http://127.0.0.1:$PORT --server-pid $VPID --database-url "$DATABASE_URL" \
   --mode $MODE --duration $SECS --argon2-samples 1 --users ${USERS:-1500} --json $OUT/report.json > $OUT/loadflow.txt 2>&1 &
LPID=$!
if [ "$MODE" = full ]; then PAT='method=GET path=/login status'; else PAT='method=POST path=/login/2fa status'; fi
until grep -q "$PAT" $LOG; do sleep 0.02; done
callgrind_control -z $VPID >/dev/null
START=$(wc -l < $LOG)
wait $LPID || true
callgrind_control -d $VPID >/dev/null
END=$(wc -l < $LOG)
kill -TERM $VPID; wait $VPID || true
if [ "$DB" = pg ]; then psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE $NAME WITH (FORCE)" >/dev/null; fi
rm -rf "$DATA"
F=$(ls $OUT/callgrind.out.* | sort -t. -k3 -n | head -1)
N=$(sed -n "$((START+1)),${END}p" $LOG | grep -c 'method=GET path=/home status=200' || true)
IR=$(callgrind_annotate "$F" 2>/dev/null | grep -m1 'PROGRAM TOTALS' | awk '{gsub(",","",$1);print $1}')
echo "$DB $MODE ops=$N Ir=$IR Ir/op=$(( IR / (N>0?N:1) )) failed=$(python3 -c "import json;print(json.load(open('$OUT/report.json'))['failed'])") file=$F"
