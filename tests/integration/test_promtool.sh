#!/bin/sh
# promtool on what roundguardd exposes and on the example alert rules:
# `promtool check metrics` on a rendered sample must find nothing wrong with
# any roundguard_* family (only the Go version's two names may draw naming
# lints), and the rules must load and fire as their comments say.
# usage: test_promtool.sh TEST_METRICS_BINARY ALERTS_YML
set -u

if ! command -v promtool >/dev/null 2>&1; then
	echo "SKIP: promtool not installed (Debian package prometheus)"
	exit 77
fi
if [ $# -ne 2 ]; then
	echo "usage: $0 TEST_METRICS_BINARY ALERTS_YML" >&2
	exit 2
fi
bin=$1
rules=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")	# promtool test rules wants it absolute
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

fail() {
	echo "FAIL: $*"
	failed=1
}

# The exposition of the unit tests' scene (three backends, one needing escapes, two TLS
# listeners with handshakes and certificates).
if ! ROUNDGUARD_RENDER_SAMPLE=1 CK_FORK=no "$bin" >"$tmp/metrics.txt"; then
	echo "FAIL: $bin could not render the sample"
	exit 1
fi
for family in proxy_count request_duration_milliseconds roundguard_backend_up \
    roundguard_requests_total roundguard_request_duration_seconds \
    roundguard_upstream_errors_total roundguard_health_checks_total \
    roundguard_no_backend_total roundguard_workers roundguard_worker_restarts_total \
    roundguard_tls_handshakes_total roundguard_tls_certificate_expiry_timestamp_seconds \
    roundguard_build_info; do
	grep -q "^# TYPE $family " "$tmp/metrics.txt" || fail "no family $family in the sample"
done

promtool check metrics <"$tmp/metrics.txt" >"$tmp/lint.txt" 2>&1
rc=$?
echo "promtool check metrics: exit $rc"
sed 's/^/  /' "$tmp/lint.txt"
# 0: clean; 3: lint problems only (looked at below); anything else: not parseable.
case $rc in
0|3) ;;
*) fail "promtool check metrics exited $rc" ;;
esac
# Known and accepted: the Go version's names (proxy_count is a gauge ending in
# _count; request_duration_milliseconds is not in seconds). Anything else, in
# particular any roundguard_* family, is a failure.
if grep -v -E '^(proxy_count|request_duration_milliseconds) ' "$tmp/lint.txt" | grep -q .; then
	fail "promtool check metrics complained beyond the Go version's names"
fi

if ! promtool check rules "$rules" >"$tmp/rules.txt" 2>&1; then
	cat "$tmp/rules.txt"
	fail "promtool check rules $rules"
else
	echo "promtool check rules: OK"
fi

# The alerts against made-up series: each fires when, and only when, it should.
cat >"$tmp/rules-test.yml" <<TEST
rule_files:
  - $rules
evaluation_interval: 5s
tests:
  # One backend fails its checks from 10s to 30s; it is the only one.
  - interval: 5s
    input_series:
      - series: 'roundguard_backend_up{backend="b1:80",instance="lb:3000",job="roundguard"}'
        values: '1 1 0 0 0 0 0 1 1'
      - series: 'proxy_count{availability="available",instance="lb:3000",job="roundguard"}'
        values: '1 1 0 0 0 0 0 1 1'
      - series: 'proxy_count{availability="unavailable",instance="lb:3000",job="roundguard"}'
        values: '0 0 1 1 1 1 1 0 0'
    alert_rule_test:
      - eval_time: 5s
        alertname: RoundguardNoBackendAvailable
        exp_alerts: []
      - eval_time: 10s
        alertname: RoundguardNoBackendAvailable
        exp_alerts:
          - exp_labels: {severity: critical, availability: available, instance: "lb:3000", job: roundguard}
            exp_annotations:
              summary: "No backend available on lb:3000"
              description: "Every backend of lb:3000 is failing its health check, so every request is answered 503."
      # Down for 5s: pending, not firing (a single missed probe).
      - eval_time: 15s
        alertname: RoundguardBackendDown
        exp_alerts: []
      - eval_time: 20s
        alertname: RoundguardBackendDown
        exp_alerts:
          - exp_labels: {severity: warning, backend: "b1:80", instance: "lb:3000", job: roundguard}
            exp_annotations:
              summary: "Backend b1:80 is down"
              description: "lb:3000 took backend b1:80 out of the rotation: it has failed its health checks for at least two check intervals. See roundguard_health_checks_total and the daemon's log for the reason."
      - eval_time: 20s
        alertname: ProxyBackendUnavailable
        exp_alerts:
          - exp_labels: {severity: warning, availability: unavailable, instance: "lb:3000", job: roundguard}
            exp_annotations:
              summary: "1 backend(s) unavailable on lb:3000"
              description: "lb:3000 has 1 backend(s) failing their health check; requests go to the others."
      - eval_time: 40s
        alertname: RoundguardBackendDown
        exp_alerts: []
      - eval_time: 40s
        alertname: ProxyBackendUnavailable
        exp_alerts: []
  # Every answer of b1 takes between 0.5s and 2.5s; b2 answers within 0.1s.
  - interval: 1m
    input_series:
      - series: 'roundguard_request_duration_seconds_bucket{backend="b1:80",le="0.5",instance="lb:3000",job="roundguard"}'
        values: '0x20'
      - series: 'roundguard_request_duration_seconds_bucket{backend="b1:80",le="2.5",instance="lb:3000",job="roundguard"}'
        values: '0+60x20'
      - series: 'roundguard_request_duration_seconds_bucket{backend="b1:80",le="+Inf",instance="lb:3000",job="roundguard"}'
        values: '0+60x20'
      - series: 'roundguard_request_duration_seconds_bucket{backend="b2:80",le="0.1",instance="lb:3000",job="roundguard"}'
        values: '0+60x20'
      - series: 'roundguard_request_duration_seconds_bucket{backend="b2:80",le="+Inf",instance="lb:3000",job="roundguard"}'
        values: '0+60x20'
      - series: 'roundguard_worker_restarts_total{instance="lb:3000",job="roundguard"}'
        values: '0 0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1'
    alert_rule_test:
      - eval_time: 10m
        alertname: RoundguardHighLatencyP99
        exp_alerts: []
      - eval_time: 16m
        alertname: RoundguardHighLatencyP99
        exp_alerts:
          - exp_labels: {severity: warning, backend: "b1:80"}
            exp_annotations:
              summary: "p99 latency of backend b1:80 above 1s"
              description: "The 99th percentile of the time from request to answer through backend b1:80 has been 2.48s (over 1s) for 10 minutes."
      - eval_time: 2m
        alertname: RoundguardWorkerRestarts
        exp_alerts: []
      - eval_time: 5m
        alertname: RoundguardWorkerRestarts
        exp_alerts:
          - exp_labels: {severity: warning, instance: "lb:3000", job: roundguard}
            exp_annotations:
              summary: "roundguardd workers restarted on lb:3000"
              description: "lb:3000 restarted 1 worker process(es) in the last 10 minutes after they died; see the daemon's log for the exit status or signal."
      - eval_time: 14m
        alertname: RoundguardWorkerRestarts
        exp_alerts: []
  # Certificates (time() is 0 at the start): a.test runs out 14 days and 10 minutes on, b.test
  # in a year, old.test at 10 minutes.
  - interval: 1m
    input_series:
      - series: 'roundguard_tls_certificate_expiry_timestamp_seconds{listener="https",name="a.test",instance="lb:3000",job="roundguard"}'
        values: '1210200x20'
      - series: 'roundguard_tls_certificate_expiry_timestamp_seconds{listener="https",name="b.test",instance="lb:3000",job="roundguard"}'
        values: '31536000x20'
      - series: 'roundguard_tls_certificate_expiry_timestamp_seconds{listener="https",name="old.test",instance="lb:3000",job="roundguard"}'
        values: '600x20'
    alert_rule_test:
      # a.test has 14 days and 5 minutes left: not yet; old.test 5 minutes.
      - eval_time: 5m
        alertname: RoundguardTLSCertificateExpiringSoon
        exp_alerts:
          - exp_labels: {severity: warning, listener: https, name: old.test, instance: "lb:3000", job: roundguard}
            exp_annotations:
              summary: "TLS certificate old.test of listener https on lb:3000 expires in 5m 0s"
              description: "The certificate for old.test on listener https of lb:3000 is valid for less than 14 days (notAfter in roundguard_tls_certificate_expiry_timestamp_seconds). Put the renewed certificate in place and reload roundguardd; new connections get it at once."
      - eval_time: 15m
        alertname: RoundguardTLSCertificateExpiringSoon
        exp_alerts:
          - exp_labels: {severity: warning, listener: https, name: a.test, instance: "lb:3000", job: roundguard}
            exp_annotations:
              summary: "TLS certificate a.test of listener https on lb:3000 expires in 13d 23h 55m 0s"
              description: "The certificate for a.test on listener https of lb:3000 is valid for less than 14 days (notAfter in roundguard_tls_certificate_expiry_timestamp_seconds). Put the renewed certificate in place and reload roundguardd; new connections get it at once."
          - exp_labels: {severity: warning, listener: https, name: old.test, instance: "lb:3000", job: roundguard}
            exp_annotations:
              summary: "TLS certificate old.test of listener https on lb:3000 has expired"
              description: "The certificate for old.test on listener https of lb:3000 is valid for less than 14 days (notAfter in roundguard_tls_certificate_expiry_timestamp_seconds). Put the renewed certificate in place and reload roundguardd; new connections get it at once."
  # Handshakes a second: "https" 10 ok, 10 closed (left out of the failures), 2 no_shared_cipher
  # (2/22 = 9.1%); "noisy" 10 ok and 10 each plain_http and timeout; "quiet" 1 ok and 1 other
  # a minute (50%, but too few to judge).
  - interval: 1m
    input_series:
      - series: 'roundguard_tls_handshakes_total{listener="https",version="TLSv1.3",result="ok",instance="lb:3000",job="roundguard"}'
        values: '0+600x40'
      - series: 'roundguard_tls_handshakes_total{listener="https",version="unknown",result="closed",instance="lb:3000",job="roundguard"}'
        values: '0+600x40'
      - series: 'roundguard_tls_handshakes_total{listener="https",version="TLSv1.2",result="no_shared_cipher",instance="lb:3000",job="roundguard"}'
        values: '0+120x40'
      - series: 'roundguard_tls_handshakes_total{listener="noisy",version="TLSv1.3",result="ok",instance="lb:3000",job="roundguard"}'
        values: '0+600x40'
      - series: 'roundguard_tls_handshakes_total{listener="noisy",version="unknown",result="plain_http",instance="lb:3000",job="roundguard"}'
        values: '0+600x40'
      - series: 'roundguard_tls_handshakes_total{listener="noisy",version="unknown",result="timeout",instance="lb:3000",job="roundguard"}'
        values: '0+600x40'
      - series: 'roundguard_tls_handshakes_total{listener="quiet",version="TLSv1.3",result="ok",instance="lb:3000",job="roundguard"}'
        values: '0+1x40'
      - series: 'roundguard_tls_handshakes_total{listener="quiet",version="unknown",result="other",instance="lb:3000",job="roundguard"}'
        values: '0+1x40'
    alert_rule_test:
      # Pending for its first 15 minutes.
      - eval_time: 10m
        alertname: RoundguardTLSHandshakeFailures
        exp_alerts: []
      - eval_time: 20m
        alertname: RoundguardTLSHandshakeFailures
        exp_alerts:
          - exp_labels: {severity: warning, listener: https, instance: "lb:3000", job: roundguard}
            exp_annotations:
              summary: "9.091% of TLS handshakes fail on listener https of lb:3000"
              description: "For 15 minutes, 9.091% of the TLS handshakes on listener https of lb:3000 have failed for want of a shared cipher or version, a certificate for the name asked for, or another TLS error. roundguard_tls_handshakes_total by result and version says which; the daemon logs each failure at debug level with OpenSSL's reason."
TEST
if promtool test rules "$tmp/rules-test.yml" >"$tmp/rules-test.txt" 2>&1; then
	echo "promtool test rules: OK"
else
	sed 's/^/  /' "$tmp/rules-test.txt"
	fail "promtool test rules: the alerts did not fire as expected"
fi

if [ $failed -ne 0 ]; then
	echo "1 failed"
	exit 1
fi
echo "OK"
