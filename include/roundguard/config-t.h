/* The parsed configuration: plain data, copied into every child process at fork. */
#ifndef ROUNDGUARD_CONFIG_T_H
#define ROUNDGUARD_CONFIG_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "roundguard/log.h"
#include "roundguard/parse.h"

#define CONFIG_BACKENDS_MAX	4096
#define CONFIG_WORKERS_MAX	256
#define CONFIG_PATH_MAX		1024
#define CONFIG_NAME_MAX		64

struct config_backend {
	char url[PARSE_HOST_MAX + PARSE_PREFIX_MAX + 16];	/* as written */
	struct backend_url addr;
	/* Resolved by the master at start-up and reload (as nginx does), not by config_*. */
	struct sockaddr_storage sa;
	socklen_t salen;
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

struct config_log {
	enum log_level level;		/* info */
	enum log_format format;		/* text */
	bool access;			/* true */
};

struct config {
	char file[CONFIG_PATH_MAX];	/* "" when built from flags alone */
	struct listen_addr listen;	/* all addresses, port 3000 */
	int workers;			/* 0 = "auto": one per online CPU */
	struct config_backend *backends;	/* owned: config_free() releases it */
	size_t nbackends;
	struct config_health health;
	struct config_proxy proxy;
	struct config_metrics metrics;
	struct config_log log;
	char user[CONFIG_NAME_MAX];	/* "" = keep the current user */
	char group[CONFIG_NAME_MAX];
};

#endif
