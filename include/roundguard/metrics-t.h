/* Metric counters as they sit in the shared segment: one slot per (worker, backend). */
#ifndef ROUNDGUARD_METRICS_T_H
#define ROUNDGUARD_METRICS_T_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

/* request_duration_milliseconds (Go version): 10 50 200 500 800 1200 2000 3500 5000 10000, +Inf. */
#define METRICS_GO_BUCKETS	10
/* roundguard_request_duration_seconds: 1ms .. 10s, +Inf. */
#define METRICS_SEC_BUCKETS	14

enum metrics_method {
	METRICS_GET,
	METRICS_POST,
	METRICS_PUT,
	METRICS_DELETE,
	METRICS_PATCH,
	METRICS_HEAD,
	METRICS_OPTIONS,
	METRICS_OTHER,
	METRICS_METHODS,
};

/* Go version's status label: success unless the answer was a 5xx (made here or by the backend). */
enum metrics_outcome {
	METRICS_SUCCESS,
	METRICS_FAIL,
	METRICS_OUTCOMES,
};

enum metrics_upstream_error {
	METRICS_ERR_CONNECT_REFUSED,
	METRICS_ERR_CONNECT_TIMEOUT,
	METRICS_ERR_CONNECT_FAILED,
	METRICS_ERR_RESET,		/* closed before a full answer */
	METRICS_ERR_TIMEOUT,		/* no answer head within proxy.timeout */
	METRICS_ERR_BAD_RESPONSE,
	METRICS_ERR_TLS,		/* an https backend's handshake or certificate check failed */
	METRICS_UPSTREAM_ERRORS,
};

/*
 * How a TLS handshake on a listener ended (roundguard_tls_handshakes_total's
 * result label), each connection counted once: done, or why not. The
 * failures are classes of OpenSSL's reasons (transport_handshake_class()).
 */
enum metrics_tls_result {
	METRICS_TLS_OK,			/* a full handshake */
	METRICS_TLS_RESUMED,		/* a session resumed (a ticket) */
	METRICS_TLS_NO_SHARED_CIPHER,	/* no cipher suite, group or signature algorithm in common */
	METRICS_TLS_UNSUPPORTED_VERSION,	/* the client's versions are not the listener's */
	METRICS_TLS_UNKNOWN_NAME,	/* strict_sni: no certificate for the SNI name (or none) */
	METRICS_TLS_PLAIN_HTTP,		/* an HTTP request where a ClientHello belongs */
	METRICS_TLS_TIMEOUT,		/* not done within tls.handshake_timeout */
	METRICS_TLS_CLOSED,		/* the client closed or reset the connection mid-way */
	METRICS_TLS_OTHER,		/* anything else: garbage, a bad record, an alert, ... */
	METRICS_TLS_RESULTS,
};

/* The protocol version a handshake agreed on; unknown when it failed before that. */
enum metrics_tls_version {
	METRICS_TLS_V1_2,
	METRICS_TLS_V1_3,
	METRICS_TLS_VUNKNOWN,
	METRICS_TLS_VERSIONS,
};

/*
 * How a PROXY protocol header on a listener with "proxy_protocol" ended
 * (roundguard_proxy_protocol_headers_total's result label), once per
 * connection: read (by version or LOCAL), or why the connection was closed.
 */
enum metrics_pp_result {
	METRICS_PP_V1,
	METRICS_PP_V2,
	METRICS_PP_LOCAL,		/* v2 LOCAL: the L4 layer's own connection (health checks) */
	METRICS_PP_MISSING,		/* the first bytes are not a PROXY header (a bare request) */
	METRICS_PP_INVALID,		/* a header that is broken, cut short by a close, or too long */
	METRICS_PP_TIMEOUT,		/* no whole header within proxy.client_timeout */
	METRICS_PP_REFUSED,		/* from an address outside proxy_protocol_from */
	METRICS_PP_RESULTS,
};

/* Listeners with a row of TLS counters: at least CONFIG_LISTENERS_MAX (metrics.c checks). */
#define METRICS_LISTENERS_MAX 16

/*
 * TLS handshakes of one worker on one listener (an index in cfg->listeners),
 * by version and result; only that worker adds to them (relaxed).
 */
struct metrics_tls {
	_Atomic uint64_t handshakes[METRICS_TLS_VERSIONS][METRICS_TLS_RESULTS];
	/* The listener's PROXY protocol headers too (issue 16), carried over reloads alike. */
	_Atomic uint64_t proxy_headers[METRICS_PP_RESULTS];
};

/* Status codes counted one by one; others are counted per class ("4xx"). */
#define METRICS_CODES 35

/*
 * Counters of one worker for one backend. Only that worker writes them
 * (relaxed adds); readers sum all workers' slots. Histogram buckets are not
 * cumulative here (one add per request); the renderer accumulates them.
 */
struct metrics_slot {
	alignas(64) _Atomic uint64_t codes[METRICS_CODES];
	_Atomic uint64_t go_hist[METRICS_METHODS][METRICS_OUTCOMES][METRICS_GO_BUCKETS + 1];
	_Atomic uint64_t go_sum_us[METRICS_METHODS][METRICS_OUTCOMES];
	_Atomic uint64_t sec_hist[METRICS_SEC_BUCKETS + 1];
	_Atomic uint64_t sec_sum_us;
	_Atomic uint64_t upstream_errors[METRICS_UPSTREAM_ERRORS];
	/* Tunnels after a 101: opened, closed (their difference is the gauge). */
	_Atomic uint64_t tunnels[2];
	/* Exchanges that took this backend (a request, then maybe a tunnel): begun, ended. */
	_Atomic uint64_t active[2];
};

#endif
