/* Request-target and Host checks (RFC 9112 3.2, RFC 3986 3.2): what the proxy may forward. */
#ifndef ROUNDGUARD_URI_H
#define ROUNDGUARD_URI_H

#include <stdbool.h>
#include <stddef.h>

enum uri_form {
	URI_ORIGIN,	/* "/path?query" */
	URI_ABSOLUTE,	/* "http://authority/path?query": sent on in origin-form */
	URI_ASTERISK,	/* "*", OPTIONS only */
};

/* Where the parts of a checked request target are, as offsets into it. */
struct uri_target {
	enum uri_form form;
	size_t authority_off, authority_len;	/* absolute-form only */
	/* What goes on as the origin-form target; need_slash: put "/" in front. */
	size_t path_off, path_len;
	bool need_slash;
};

/*
 * Check a request target: origin-form; absolute-form with scheme http or
 * https and a valid authority (no userinfo); "*" only when options (the
 * method is OPTIONS). Refused anywhere: a fragment, a byte outside VCHAR
 * (control bytes, space, non-ASCII), and in the path a malformed
 * percent-encoding or an encoded NUL ("%00"). NULL when the target may go
 * on (out filled), else the reason for the 400.
 */
const char *uri_target_check(const char *t, size_t len, bool options, struct uri_target *out);

/*
 * Check a Host value (or an absolute-form authority): exactly
 * uri-host [":" port], where uri-host is a reg-name or IPv4 address (RFC 3986
 * unreserved, sub-delims but ",", and percent-encodings), or an IPv6 address
 * in brackets, and port is 1 to 5 digits up to 65535. NULL when valid, else
 * the reason for the 400.
 */
const char *uri_host_check(const char *h, size_t len);

#endif
