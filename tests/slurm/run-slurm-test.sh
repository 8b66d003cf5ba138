#!/bin/bash
# A real single-node SLURM on localhost: munged + slurmctld + slurmd (Debian's slurm-wlm),
# generated slurm.conf (select/cons_tres, CPU only, no cgroups, no accounting), then the CPU array
# template submitted as a 2-task array, one task sent USR1 through its batch shell (what
# --signal=B:USR1@s does at the time limit) so it exits 75 and requeues itself, all tasks waited
# for, `paramx merge` run and its report checked.
#
# Usage (as root; `cargo test --test slurm_array` calls it with a generated fixture):
#   PARAMX=target/release/paramx PARAMX_CONFIG=/abs/job.toml PARAMX_OUT=/abs/out \
#   EXPECT_INPUTS=5 tests/slurm/run-slurm-test.sh WORKDIR
# Exit: 0 pass, 1 fail, 77 skipped (not root / no apt-get and no slurm). Never hangs: every wait
# has a deadline, and the daemons are stopped on exit, whatever happens.
set -uo pipefail
WORK=${1:?usage: run-slurm-test.sh WORKDIR}
: "${PARAMX:?}" "${PARAMX_CONFIG:?}" "${PARAMX_OUT:?}" "${EXPECT_INPUTS:?}"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TEMPLATE=$REPO/slurm/paramx-array-cpu.sbatch
mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd)
log() { echo "slurm-test: $*"; }
fail() { log "FAIL: $*"; for f in "$WORK"/slurmctld.log "$WORK"/slurmd.log "$WORK"/logs/*; do [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "SKIP: slurm-wlm/munge not installed and cannot apt-get install them (need root + apt)"; exit 77
    fi
    log "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get install -y -q slurm-wlm munge >"$WORK/apt.log" 2>&1 \
        || { timeout 300 apt-get update -q >>"$WORK/apt.log" 2>&1 && timeout 600 apt-get install -y -q slurm-wlm munge >>"$WORK/apt.log" 2>&1; } \
        || { log "SKIP: apt-get install slurm-wlm munge failed (see $WORK/apt.log)"; exit 77; }
fi
[ "$(id -u)" = 0 ] || { log "SKIP: the daemons need root here"; exit 77; }

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    [ -f "$WORK/munged.pid" ] && kill "$(cat "$WORK/munged.pid")" 2>/dev/null
}
trap cleanup EXIT

mkdir -p "$WORK"/{state,spool,logs,munge}
chmod 700 "$WORK/munge"
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$WORK/munge/munge.key"
munged --force --socket="$WORK/munge/munge.sock" --key-file="$WORK/munge/munge.key" \
    --pid-file="$WORK/munged.pid" --log-file="$WORK/munged.log" --seed-file="$WORK/munge/seed" \
    || fail "munged did not start"

NODE=$(hostname -s)
PORT=$((20000 + $$ % 20000))
NODELINE=$(slurmd -C | head -1 | sed -E 's/RealMemory=([0-9]+)/RealMemory=\1/')
[ -n "$NODELINE" ] || fail "slurmd -C printed nothing"
cat >"$WORK/slurm.conf" <<CONF
ClusterName=paramxtest
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$WORK/munge/munge.sock
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
$NODELINE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=test Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$WORK/slurm.conf

slurmctld -D -i -f "$SLURM_CONF" >"$WORK/slurmctld.out" 2>&1 & PIDS+=($!)
slurmd -D -f "$SLURM_CONF" -N "$NODE" >"$WORK/slurmd.out" 2>&1 & PIDS+=($!)
deadline=$((SECONDS + 60))
until sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; do
    [ $SECONDS -lt $deadline ] || fail "node not idle after 60 s: $(sinfo 2>&1)"
    sleep 1
done
log "controller and node up: $(sinfo -h -o '%N %t %c CPUs %m MB')"

JOB=$(sbatch --parsable --array=0-1%2 --cpus-per-task=1 --mem=1500M --time=20 \
    --chdir="$WORK" --output="$WORK/logs/%x-%A_%a.out" \
    --export=ALL,PARAMX="$PARAMX",PARAMX_CONFIG="$PARAMX_CONFIG",PARAMX_OUT="$PARAMX_OUT",RAYON_NUM_THREADS=1 \
    "$TEMPLATE") || fail "sbatch refused the template"
log "submitted array job $JOB"
LOG0=$WORK/logs/paramx-cpu-${JOB}_0.out

# USR1 to task 0's batch shell once paramx is running in it: the template must forward it,
# paramx exit 75, the template requeue the task, and the requeued task finish the work.
deadline=$((SECONDS + 120))
until [ -f "$LOG0" ] && grep -q "paramx-sbatch: task" "$LOG0"; do
    [ $SECONDS -lt $deadline ] || fail "task 0 did not start in 120 s: $(squeue 2>&1)"
    sleep 0.5
done
sleep 2
scancel --batch --signal=USR1 "${JOB}_0" && log "sent USR1 to task 0's batch shell"

deadline=$((SECONDS + ${SLURM_TEST_TIMEOUT:-900}))
hurried=
while [ -n "$(squeue -h -j "$JOB" 2>/dev/null)" ]; do
    [ $SECONDS -lt $deadline ] || { scancel "$JOB"; fail "array not done in time: $(squeue 2>&1)"; }
    # slurmctld holds a requeued job back for a while (BeginTime); the test need not wait.
    if [ -z "$hurried" ] && grep -q "requeued job" "$LOG0" 2>/dev/null; then
        sleep 1
        scontrol update JobId="${JOB}_0" StartTime=now 2>/dev/null && hurried=1
    fi
    sleep 1
done
for f in "$WORK"/logs/*.out; do echo "--- $f"; cat "$f"; done

grep -q "exited with 75" "$LOG0" || log "note: task 0 had finished before USR1 arrived (no requeue exercised)"
if grep -q "exited with 75" "$LOG0"; then
    grep -q "requeued job" "$LOG0" || fail "task 0 exited 75 but was not requeued"
    grep -q "restart 1" "$LOG0" || fail "task 0 was requeued but did not run again"
    log "task 0: USR1 -> exit 75 -> requeue -> rerun: OK"
fi
for t in 0 1; do
    tail -n 3 "$WORK/logs/paramx-cpu-${JOB}_$t.out" | grep -qE "exited with (0|1) at" \
        || fail "task $t did not finish its share"
done

"$PARAMX" merge --out "$PARAMX_OUT" >"$WORK/merge.out" 2>&1; mrc=$?
cat "$WORK/merge.out"
[ "$mrc" -le 1 ] || fail "paramx merge failed ($mrc)"
python3 - "$PARAMX_OUT/merge.json" "$EXPECT_INPUTS" <<'PY' || fail "merge report check"
import json, sys
r = json.load(open(sys.argv[1])); n = int(sys.argv[2])
assert not r["missing"] and not r["duplicated"] and not r["missing_tasks"], r
assert r["ok"] + len(r["failed"]) == n, (r["ok"], r["failed"], n)
print(f"slurm-test: merged {n} inputs: {r['ok']} ok, {len(r['failed'])} failed, 0 missing, 0 duplicated")
PY
[ -s "$PARAMX_OUT/table.csv" ] || fail "no merged table"
log "PASS"
