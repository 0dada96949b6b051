/* Configuration: defaults < JSON file < environment < command line, then validation. */
#ifndef ROUNDGUARD_CONFIG_H
#define ROUNDGUARD_CONFIG_H

#include <stddef.h>

#include "roundguard/config-t.h"

/* Fill cfg with the built-in defaults (no backends). */
void config_defaults(struct config *cfg);

/*
 * Merge a JSON document (json-c, with // and block comments allowed) into
 * cfg. name is the file name used in messages. Every problem found is
 * reported, one per line, in err ("roundguardd.json: health_check.interval:
 * \"5x\": not a duration: ..."); returns the number of problems (0 = OK).
 * Unknown keys, wrong types and bad values are problems.
 */
int config_parse_json(struct config *cfg, const char *name, const char *text, size_t len,
    char *err, size_t errlen);

/* Read and parse a file; a file that cannot be read is one problem. */
int config_load_file(struct config *cfg, const char *path, char *err, size_t errlen);

/*
 * Apply environment overrides read through getenv_fn (getenv in the daemon,
 * a fake in tests): LOG_LEVEL, LOG_FORMAT, PROXY_CHECK_DURATION. Returns the
 * number of problems, each naming the variable.
 */
int config_apply_env(struct config *cfg, const char *(*getenv_fn)(const char *name),
    char *err, size_t errlen);

/* Append a backend URL (from --backend/--hosts); problems counted as above. */
int config_add_backend(struct config *cfg, const char *url, const char *source,
    char *err, size_t errlen);

/*
 * The address -l and -p change: "listen" in the short form, else the first
 * listener without "tls"; NULL when every listener has TLS.
 */
struct listen_addr *config_plain_listen(struct config *cfg);

/*
 * Cross-field checks once everything is merged: at least one backend, no
 * duplicates, workers in 1..256 (0 = auto is fine), check timeout < interval
 * when set explicitly (otherwise shrunk to fit), listeners that do not
 * overlap, and so on. It also completes the listeners: the short form
 * ("listen") becomes listeners[0], unnamed ones get a name ("https-443"),
 * handshake_timeout defaults to proxy.client_timeout, and cfg->listen is set
 * to the first plain listener's address. Returns the number of problems.
 */
int config_validate(struct config *cfg, char *err, size_t errlen);

/* Deep copy (backends and listeners included); 0 or -1 on allocation failure. */
int config_copy(struct config *dst, const struct config *src);
void config_free(struct config *cfg);

/* Whether two configurations have the same backend list in the same order. */
bool config_same_backends(const struct config *a, const struct config *b);

#endif
