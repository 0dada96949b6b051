/* Prometheus metrics: recording in the hot path, summing over workers, rendering text 0.0.4. */
#ifndef ROUNDGUARD_METRICS_H
#define ROUNDGUARD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roundguard/config-t.h"
#include "roundguard/metrics-t.h"
#include "roundguard/shm.h"

struct evbuffer;
struct tls_cert_expiry;

/* Index into metrics_slot.codes for a status code (exact code, or its class). */
int metrics_code_index(int status);
/* The label for a codes index: "200", ..., "4xx". */
const char *metrics_code_label(int index);
/* Method slot for an llhttp method number; label "GET", ..., "OTHER". */
enum metrics_method metrics_method_index(int llhttp_method);
const char *metrics_method_label(enum metrics_method m);
/* "connect_refused", "connect_timeout", "connect_failed", "reset", "timeout", "bad_response", "tls". */
const char *metrics_upstream_error_str(enum metrics_upstream_error e);
/* "ok", "resumed", "no_shared_cipher", ..., "other". */
const char *metrics_tls_result_str(enum metrics_tls_result r);
/* "TLSv1.2", "TLSv1.3", "unknown". */
const char *metrics_tls_version_str(enum metrics_tls_version v);

/*
 * The version label of a handshake that ended with r, having agreed on
 * wire_version (0x0303, 0x0304 as on the wire; transport_version()):
 * unknown for any other number (0: none agreed yet), and for the failures
 * that come before a version is agreed (unsupported_version, plain_http),
 * whatever OpenSSL left there.
 */
enum metrics_tls_version metrics_tls_version(int wire_version, enum metrics_tls_result r);

/*
 * Count one answered request in a worker's slot for the backend that served
 * it (or was meant to): a handful of relaxed atomic adds, no allocation.
 */
void metrics_record(struct metrics_slot *s, int llhttp_method, int status, int64_t duration_ns);
void metrics_record_upstream_error(struct metrics_slot *s, enum metrics_upstream_error e);

/* Count one handshake on listener (an index in cfg->listeners) in worker w's counters. */
void metrics_record_tls_handshake(struct shm_worker *w, int listener, enum metrics_tls_version v,
    enum metrics_tls_result r);

/*
 * The slot's worker is gone, and the kernel closed its tunnels with it: count
 * them closed, so that roundguard_tunnels_active comes down. For the master,
 * on a worker's death, before its replacement owns the slot.
 */
void metrics_slot_tunnels_gone(struct metrics_slot *s);

/* dst += src, counter by counter (the master carrying totals into a new segment). */
void metrics_slot_add(struct metrics_slot *dst, const struct metrics_slot *src);

/* dst += now - then, counter by counter; then NULL is all zero. */
void metrics_slot_add_delta(struct metrics_slot *dst, const struct metrics_slot *now,
    const struct metrics_slot *then);

/* The same for one listener's TLS handshake counters. */
void metrics_tls_add_delta(struct metrics_tls *dst, const struct metrics_tls *now,
    const struct metrics_tls *then);

/*
 * Render every family, summed over all worker slots plus the carried-totals
 * slot of shm, in Prometheus text format 0.0.4: proxy_count,
 * request_duration_milliseconds, roundguard_backend_up,
 * roundguard_requests_total, roundguard_request_duration_seconds,
 * roundguard_upstream_errors_total, roundguard_health_checks_total,
 * roundguard_no_backend_total, roundguard_header_fields_dropped_total,
 * roundguard_tls_handshakes_total (cfg's TLS listeners),
 * roundguard_tls_certificate_expiry_timestamp_seconds (certs[ncerts], as
 * tls_cert_expiry() gives them; the earliest of those that share a listener
 * and a name), roundguard_workers, roundguard_worker_restarts_total,
 * roundguard_build_info. Backend labels are cfg->backends[i].addr.hostport,
 * listener labels cfg->listeners[i].name, escaped. 0, or -1 if out grew no
 * more.
 */
int metrics_render(struct evbuffer *out, const struct shm *shm, const struct config *cfg,
    const struct tls_cert_expiry *certs, size_t ncerts, const char *version);

/* Append s to out as a label value: backslash, double quote and newline escaped. */
int metrics_escape_label(struct evbuffer *out, const char *s);

/*
 * Backend b's name as metrics and roundguardctl show it: host:port, or for a
 * discovered name's slot the address it holds; false for a free or
 * draining slot (which is not shown).
 */
/*
 * Backend b's exchanges in flight (requests and tunnels: begun minus ended),
 * over every row. Signed: two sums read one after the other may dip below 0.
 */
int64_t metrics_in_flight(const struct shm *shm, uint32_t b);

bool metrics_backend_name(const struct shm *shm, const struct config *cfg, uint32_t b, char *buf,
    size_t buflen);

#endif
