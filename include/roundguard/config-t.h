/* The parsed configuration: plain data, copied into every child process at fork. */
#ifndef ROUNDGUARD_CONFIG_T_H
#define ROUNDGUARD_CONFIG_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "roundguard/log.h"
#include "roundguard/net.h"
#include "roundguard/parse.h"
#include "roundguard/proxyproto.h"

#define CONFIG_BACKENDS_MAX	4096
#define CONFIG_WORKERS_MAX	256
#define CONFIG_PATH_MAX		1024
#define CONFIG_NAME_MAX		64
#define CONFIG_LISTENERS_MAX	16
#define CONFIG_CERTS_MAX	8	/* certificates per TLS listener */
#define CONFIG_CIPHERS_MAX	1024

/* TLS protocol versions as on the wire (and as OpenSSL's TLS1_2_VERSION), without OpenSSL's headers. */
#define CONFIG_TLS_1_2		0x0303
#define CONFIG_TLS_1_3		0x0304

/* How roundguardd talks TLS to an https:// backend (config_backend.addr.tls). */
struct config_backend_tls {
	char ca_file[CONFIG_PATH_MAX];		/* "" = the system's default CA paths */
	char server_name[PARSE_HOST_MAX];	/* SNI and name checked; "" = the URL's host */
	bool verify;				/* true; false is logged at every start */
};

enum config_discover {
	CONFIG_DISCOVER_NONE,		/* a backend of its own, resolved at start and reload */
	CONFIG_DISCOVER_DNS,		/* every A and AAAA address of the URL's host */
	CONFIG_DISCOVER_SRV,		/* every SRV target, with its port and weight */
};

#define CONFIG_DISCOVER_MAX_DEFAULT	16
#define CONFIG_DISCOVER_MAX		256	/* max_backends of one name */
#define CONFIG_RESOLVERS_MAX		8

struct config_backend {
	char url[PARSE_HOST_MAX + PARSE_PREFIX_MAX + 16];	/* as written */
	struct backend_url addr;
	struct config_backend_tls tls;	/* used when addr.tls */
	uint32_t weight;		/* 1; 0-256, 0 = drained (a share of weight / sum) */
	bool send_proxy;		/* "send_proxy": "v2": a PROXY v2 header on every connection */
	/*
	 * Discovery (config_discover.c): an entry with "discover": "dns" or "srv"
	 * becomes max_backends slots in a row, copies of it; the health checker
	 * gives each slot an address the name resolves to (shm_backend's slot
	 * fields) and workers copy it into sa and addr.hostport when it changes.
	 */
	uint8_t discover;		/* enum config_discover */
	uint32_t discover_max;		/* "max_backends": slots of this name (16) */
	uint32_t discover_first;	/* index of the name's first slot */
	uint32_t file_index;		/* its entry's index in "backends", for messages */
	char srv[PARSE_HOST_MAX];	/* the SRV name ("srv"); addr.host for "discover": "dns" */
	/* Resolved by the master at start-up and reload (as nginx does), not by config_*. */
	struct sockaddr_storage sa;
	socklen_t salen;
};

/* One certificate of a TLS listener: a PEM chain (leaf first) and its private key. */
struct config_cert {
	char cert[CONFIG_PATH_MAX];
	char key[CONFIG_PATH_MAX];
};

struct config_tls_server {
	struct config_cert certs[CONFIG_CERTS_MAX];	/* certs[0] is the default one */
	size_t ncerts;
	uint16_t min_version;		/* CONFIG_TLS_1_2 */
	char ciphers[CONFIG_CIPHERS_MAX];	/* TLS 1.2 list; Mozilla "intermediate" */
	char ciphersuites[CONFIG_CIPHERS_MAX];	/* TLS 1.3; "" = OpenSSL's default */
	bool strict_sni;		/* false: unknown or no SNI gets certs[0] */
	bool session_tickets;		/* true */
	int64_t handshake_timeout_ns;	/* proxy.client_timeout unless set */
	bool handshake_timeout_set;
};

/* One listening address; config_validate() makes listeners[0] of the plain "listen" form too. */
struct config_listener {
	char name[CONFIG_NAME_MAX];	/* "https-443" unless set; unique */
	bool name_set;
	struct listen_addr addr;
	bool tls_set;			/* a "tls" object: TLS on this listener */
	struct config_tls_server tls;
	bool redirect_https;		/* plain only: 308 to https://host[:redirect_port]/target */
	uint16_t redirect_port;		/* 443 */
	bool proxy_protocol;		/* a PROXY v1/v2 header ahead of every connection */
	struct proxyproto_cidr proxy_from[PROXYPROTO_FROM_MAX];	/* who may send it; none: anyone */
	size_t nproxy_from;
};

struct config_health {
	char path[CONFIG_PATH_MAX];	/* "/live" */
	int64_t interval_ns;		/* 5s; PROXY_CHECK_DURATION overrides the file */
	int64_t timeout_ns;		/* 2s, shrunk to the interval unless set explicitly */
	bool timeout_set;		/* given in the file: then it must be < interval */
	int rise;			/* 1 */
	int fall;			/* 1 */
	int expect_status;		/* 200 */
};

struct config_proxy {
	int64_t connect_timeout_ns;	/* 2s */
	int64_t timeout_ns;		/* 60s, for the response head */
	int64_t client_timeout_ns;	/* 60s, for a request head or body */
	int64_t shutdown_timeout_ns;	/* 10s, draining on SIGTERM or reload */
	int64_t tunnel_timeout_ns;	/* 1h, a tunnel idle both ways */
	uint64_t max_body_size;		/* 16MiB */
	uint64_t max_header_size;	/* 16KiB */
	int keepalive;			/* idle pooled connections per backend per worker, 64 */
	bool retry_unsent;		/* true */
	bool retry_idempotent;		/* true */
	bool underscores_in_headers;	/* false: request header names with "_" are dropped */
	bool allow_trace;		/* false: TRACE gets 405 */
};

struct config_metrics {
	char path[CONFIG_PATH_MAX];	/* "/metrics" on the proxy port */
	bool listen_set;		/* a separate listener instead of the proxy port */
	struct listen_addr listen;
};

/* The master's control socket (roundguardctl) and the state that outlives a restart. */
struct config_control {
	char socket[CONFIG_PATH_MAX];	/* CONTROL_SOCKET_DEFAULT; "" = none (null) */
	char group[CONFIG_NAME_MAX];	/* group of the socket (mode 0660); "" = the master's */
	char state_file[CONFIG_PATH_MAX];	/* "" = none */
	int64_t slow_start_ns;		/* 0 = off */
};

/* How discovered names are resolved (the health checker, with c-ares). */
struct config_resolve {
	struct net_addr resolvers[CONFIG_RESOLVERS_MAX];	/* with port; none: /etc/resolv.conf */
	size_t nresolvers;
	int64_t min_interval_ns;	/* 1s: the TTL is never taken below this */
	int64_t max_interval_ns;	/* 300s: nor above this */
	int64_t timeout_ns;		/* 2s: an answer that takes longer is a timeout */
	int64_t hold_ns;		/* 1h: how long failures keep the last good answer */
};

struct config_log {
	enum log_level level;		/* info */
	enum log_format format;		/* text */
	bool access;			/* true */
};

struct config {
	char file[CONFIG_PATH_MAX];	/* "" when built from flags alone */
	/* The first plain listener's address (listeners[0]'s when none is plain); -l and -p set it. */
	struct listen_addr listen;	/* all addresses, port 3000 */
	bool listen_set;		/* "listen" was in the file */
	/* Owned (config_free()); config_validate() fills it from "listen" when the file has no "listeners". */
	struct config_listener *listeners;
	size_t nlisteners;
	bool listeners_set;		/* "listeners" was in the file */
	int workers;			/* 0 = "auto": one per online CPU */
	struct config_backend *backends;	/* owned: config_free() releases it */
	size_t nbackends;
	struct config_health health;
	struct config_proxy proxy;
	struct config_metrics metrics;
	struct config_log log;
	struct config_control control;
	struct config_resolve resolve;
	char user[CONFIG_NAME_MAX];	/* "" = keep the current user */
	char group[CONFIG_NAME_MAX];
};

#endif
