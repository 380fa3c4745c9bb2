# Runs each test named in /opt/tests alone, in the order given; one
# VMTEST-CASE line per test, the tail of a failing test's output after it.
# (bash: busybox ash would run its own applets instead of the host's ip.)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export FLANNEL_PROBE_BIN=/opt/flannel-probe CI=true RUST_BACKTRACE=1
export FLANNEL_PROBE_TEST_TIME_SCALE=${FLANNEL_PROBE_TEST_TIME_SCALE:-1}
echo "VMTEST-SCALE $FLANNEL_PROBE_TEST_TIME_SCALE"
fail=0
while read -r t; do
  [ -n "$t" ] || continue
  t0=$(cut -d' ' -f1 /proc/uptime)
  /opt/it --test-threads 1 --exact "$t" > /tmp/t.out 2>&1
  rc=$?
  t1=$(cut -d' ' -f1 /proc/uptime)
  s=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")
  # --exact with a name that matches nothing runs 0 tests and passes.
  if [ $rc = 0 ] && grep -q '^test result: ok. 1 passed' /tmp/t.out; then
    echo "VMTEST-CASE ok $t ${s}s"
  else
    echo "VMTEST-CASE FAIL $t ${s}s rc=$rc"
    tail -60 /tmp/t.out
    fail=1
  fi
done < /opt/tests
exit $fail
