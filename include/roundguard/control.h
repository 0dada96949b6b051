/* The control protocol between roundguardctl and the master: requests parsed and formatted, no I/O. */
#ifndef ROUNDGUARD_CONTROL_H
#define ROUNDGUARD_CONTROL_H

#include <stddef.h>

#include "roundguard/parse.h"

/* Where the master listens and roundguardctl connects unless told otherwise. */
#define CONTROL_SOCKET_DEFAULT	"/run/roundguardd/control.sock"
/* roundguardctl's -s default comes from this variable when it is set and not empty. */
#define CONTROL_SOCKET_ENV	"ROUNDGUARD_CONTROL"

/* One request is one JSON object of at most this many bytes; a valid one always fits. */
#define CONTROL_REQUEST_MAX	4096
/* The longest backend a request names: a URL as config accepts it (config_backend.url). */
#define CONTROL_BACKEND_MAX	(PARSE_HOST_MAX + PARSE_PREFIX_MAX + 15)
#define CONTROL_WEIGHT_MAX	256
/* Room for any reason control_request_parse() gives, NUL included. */
#define CONTROL_REASON_MAX	256

enum control_command {
	CONTROL_STATUS,
	CONTROL_DRAIN,
	CONTROL_MAINT,
	CONTROL_READY,
	CONTROL_WEIGHT,
};

/*
 * A parsed request. backend is "" for CONTROL_STATUS, else a backend's URL as
 * configured or its "host:port", 1 to CONTROL_BACKEND_MAX bytes of printable
 * ASCII without spaces. weight is 0 to CONTROL_WEIGHT_MAX for CONTROL_WEIGHT,
 * -1 for every other command.
 */
struct control_request {
	enum control_command command;
	char backend[CONTROL_BACKEND_MAX + 1];
	int weight;
};

/*
 * Parse one request: exactly one JSON object (RFC 8259, UTF-8, no NUL, at
 * most CONTROL_REQUEST_MAX bytes, white space around it allowed) with the
 * keys its command takes and no others, each once. 0 with out filled, or -1
 * with a one-line reason of printable ASCII in err (CONTROL_REASON_MAX bytes
 * hold any): "weight: 300 is out of range (0-256)". A
 * reason about one key starts with the key and a colon ("command: ",
 * "backend: ", "weight: "), so the daemon can tell a bad weight from other
 * bad requests.
 */
int control_request_parse(const char *buf, size_t len, struct control_request *out, char *err,
    size_t errlen);

/*
 * The request as compact JSON text in buf, NUL-terminated: the keys its
 * command takes, backend escaped as JSON needs. The length without the NUL,
 * or -1 if it does not fit in len bytes or the command is not one of the enum.
 * Fields are written as they are: control_request_parse() checks them.
 */
int control_request_format(const struct control_request *r, char *buf, size_t len);

/* "status", "drain", "maint", "ready", "weight"; "unknown" for anything else. */
const char *control_command_name(enum control_command c);
/* The command named s (as control_command_name() spells it): 0, or -1 if none is. */
int control_command_from_name(const char *s, enum control_command *out);

#endif
