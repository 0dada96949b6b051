/* Leveled, structured logging: one line per call, text for humans or JSON for machines, to stderr. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "roundguard/log.h"

/* Pairs beyond this are dropped: the fields live on the stack of every log call. */
#define LOG_MAX_FIELDS 32
/* Longer lines are cut; one buffer keeps a line to one write(2) without allocating. */
#define LOG_LINE_MAX 8192
/* Access lines wait here until it fills or log_flush() runs (every 100 ms in a worker). */
#define LOG_ACCESS_BUF (64 * 1024)
#define LOG_PROC_MAX 32
#define LOG_PROC_DEFAULT "roundguard"

#define LOG_COLOR_RESET "\033[0m"

/*
 * The pid for access lines, which come once per request: set by
 * log_set_proc() (each process names itself after fork) to spare a getpid()
 * system call per request. Other lines call getpid() each time.
 */
static pid_t log_access_pid;

/* Processes are single-threaded (one per role), so plain globals need no locking. */
static struct {
	enum log_level level;
	enum log_format format;
	bool color;
	char proc[LOG_PROC_MAX];
} log_state = {
	.level = LOG_LEVEL_INFO,
	.format = LOG_FORMAT_TEXT,
	.color = false,
	.proc = LOG_PROC_DEFAULT,
};

static const char *const log_level_upper[] = {
	[LOG_LEVEL_TRACE] = "TRACE",
	[LOG_LEVEL_DEBUG] = "DEBUG",
	[LOG_LEVEL_INFO] = "INFO",
	[LOG_LEVEL_WARN] = "WARN",
	[LOG_LEVEL_ERROR] = "ERROR",
};

static const char *const log_level_lower[] = {
	[LOG_LEVEL_TRACE] = "trace",
	[LOG_LEVEL_DEBUG] = "debug",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_ERROR] = "error",
};

/* Grey for the chatter, then green, yellow, red as it gets worse. */
static const char *const log_level_color[] = {
	[LOG_LEVEL_TRACE] = "\033[90m",
	[LOG_LEVEL_DEBUG] = "\033[90m",
	[LOG_LEVEL_INFO] = "\033[32m",
	[LOG_LEVEL_WARN] = "\033[33m",
	[LOG_LEVEL_ERROR] = "\033[31m",
};

/* Accepted spellings; the aliases are what the Go version (logrus) also took. */
static const struct {
	const char *name;
	enum log_level level;
} log_level_names[] = {
	{ "trace", LOG_LEVEL_TRACE },
	{ "debug", LOG_LEVEL_DEBUG },
	{ "info", LOG_LEVEL_INFO },
	{ "warn", LOG_LEVEL_WARN },
	{ "error", LOG_LEVEL_ERROR },
	{ "warning", LOG_LEVEL_WARN },
	{ "fatal", LOG_LEVEL_ERROR },
	{ "panic", LOG_LEVEL_ERROR },
};

static const char log_hex[] = "0123456789abcdef";

/*
 * A bounded output buffer that counts what the whole line would need. Output
 * is made of units (one character or escape sequence, or an atomic group); a
 * unit that does not fit, with room kept to close the line, is dropped
 * together with everything after it, so a cut line is always a prefix of the
 * full one plus its closing bytes.
 */
struct log_out {
	char *buf;
	size_t cap;      /* bytes for the line itself, the NUL excluded */
	size_t pos;      /* bytes written */
	size_t need;     /* bytes the full line needs */
	size_t reserve;  /* kept free for the line's end: "}\n" or "\n" */
	bool full;       /* a unit did not fit: write nothing more, only count */
	bool in_str;     /* a quoted string is open: one more byte kept free */
};

/* Where an atomic group began, to take it back if it does not fit whole. */
struct log_mark {
	size_t pos;
	bool full;
	bool in_str;
};

static bool
log_level_valid(enum log_level level)
{
	return level >= LOG_LEVEL_TRACE && level <= LOG_LEVEL_ERROR;
}

const char *
log_level_str(enum log_level level)
{
	return log_level_valid(level) ? log_level_upper[level] : "UNKNOWN";
}

const char *
log_format_str(enum log_format format)
{
	switch (format) {
	case LOG_FORMAT_TEXT:
		return "text";
	case LOG_FORMAT_JSON:
		return "json";
	}
	return "unknown";
}

int
log_level_parse(const char *s, enum log_level *out, char *err, size_t errlen)
{
	size_t i;

	for (i = 0; s != NULL && i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
		if (strcasecmp(s, log_level_names[i].name) == 0) {
			*out = log_level_names[i].level;
			return 0;
		}
	}
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "invalid log level \"%s\" (valid: trace, debug, info, warn, error)",
		    s != NULL ? s : "");
	return -1;
}

int
log_format_parse(const char *s, enum log_format *out, char *err, size_t errlen)
{
	if (s != NULL && strcasecmp(s, "text") == 0) {
		*out = LOG_FORMAT_TEXT;
		return 0;
	}
	if (s != NULL && strcasecmp(s, "json") == 0) {
		*out = LOG_FORMAT_JSON;
		return 0;
	}
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "invalid log format \"%s\" (valid: text, json)", s != NULL ? s : "");
	return -1;
}

/* Milliseconds are truncated, not rounded, so a time never moves into the next second. */
void
log_format_time(char *buf, size_t buflen, const struct timespec *ts)
{
	struct tm tm;
	time_t sec = ts->tv_sec;
	long ms = ts->tv_nsec / 1000000;

	if (buflen == 0)
		return;
	if (ms < 0 || ms > 999)
		ms = 0;
	if (gmtime_r(&sec, &tm) == NULL) {
		/* Only for absurd clocks; keep the line's shape rather than fail. */
		strlcpy(buf, "0000-00-00T00:00:00.000Z", buflen);
		return;
	}
	snprintf(buf, buflen, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

static void
log_out_init(struct log_out *o, char *buf, size_t cap, size_t reserve)
{
	o->buf = buf;
	o->cap = cap;
	o->pos = 0;
	o->need = 0;
	o->reserve = reserve;
	o->full = false;
	o->in_str = false;
}

/* Append one unit if it fits with the reserve left over; count it either way. */
static void
log_out_put(struct log_out *o, const char *s, size_t n)
{
	o->need += n;
	if (o->full)
		return;
	if (o->pos + n + o->reserve + (o->in_str ? 1 : 0) > o->cap) {
		o->full = true;
		return;
	}
	memcpy(o->buf + o->pos, s, n);
	o->pos += n;
}

/* Open a quoted string; the room for its closing quote is kept from now on. */
static void
log_out_open_quote(struct log_out *o)
{
	if (!o->full)
		o->in_str = true;
	log_out_put(o, "\"", 1);
}

/* Close a quoted string; if the quote does not fit, log_out_close_str() adds it. */
static void
log_out_close_quote(struct log_out *o)
{
	if (o->full) {
		o->need++;
		return;
	}
	o->in_str = false;
	log_out_put(o, "\"", 1);
	if (o->full)
		o->in_str = true;
}

/* Append the line's ending, which the reserve has kept room for; count it. */
static void
log_out_end(struct log_out *o, const char *s, size_t n)
{
	o->need += n;
	if (o->pos + n > o->cap) {
		o->full = true;
		return;
	}
	memcpy(o->buf + o->pos, s, n);
	o->pos += n;
}

/* Close a string cut short: not part of the full line, so not counted. */
static void
log_out_close_str(struct log_out *o)
{
	if (o->in_str && o->pos < o->cap)
		o->buf[o->pos++] = '"';
	o->in_str = false;
}

static struct log_mark
log_out_mark(const struct log_out *o)
{
	struct log_mark m = { o->pos, o->full, o->in_str };

	return m;
}

/*
 * End an atomic group begun at m: if it did not fit, drop what was written
 * of it, as half a key or half a colour code would corrupt the line.
 */
static void
log_out_group(struct log_out *o, struct log_mark m)
{
	if (o->full && !m.full) {
		o->pos = m.pos;
		o->in_str = m.in_str;
	}
}

/* Length of the UTF-8 sequence at p, so that a cut never splits a character. */
static size_t
log_utf8_len(const unsigned char *p)
{
	size_t want, n;

	if (p[0] >= 0xf0)
		want = 4;
	else if (p[0] >= 0xe0)
		want = 3;
	else if (p[0] >= 0xc0)
		want = 2;
	else
		want = 1;
	for (n = 1; n < want && (p[n] & 0xc0) == 0x80; n++)
		;
	return n;
}

static bool
log_is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* JSON string contents: RFC 8259 escapes, other bytes (UTF-8 included) as they are. */
static void
log_json_escaped(struct log_out *o, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char esc[6] = { '\\', 'u', '0', '0', 0, 0 };
	size_t n;

	while (*p != '\0') {
		switch (*p) {
		case '"': log_out_put(o, "\\\"", 2); break;
		case '\\': log_out_put(o, "\\\\", 2); break;
		case '\n': log_out_put(o, "\\n", 2); break;
		case '\r': log_out_put(o, "\\r", 2); break;
		case '\t': log_out_put(o, "\\t", 2); break;
		case '\b': log_out_put(o, "\\b", 2); break;
		case '\f': log_out_put(o, "\\f", 2); break;
		default:
			if (log_is_ctl(*p)) {
				esc[4] = log_hex[*p >> 4];
				esc[5] = log_hex[*p & 0xf];
				log_out_put(o, esc, sizeof(esc));
				break;
			}
			n = log_utf8_len(p);
			log_out_put(o, (const char *)p, n);
			p += n;
			continue;
		}
		p++;
	}
}

/* One "key":"value" member; first omits the comma. */
static void
log_json_member(struct log_out *o, bool first, const char *key, const char *value)
{
	struct log_mark m = log_out_mark(o);

	log_out_put(o, first ? "\"" : ",\"", first ? 1 : 2);
	log_json_escaped(o, key);
	log_out_put(o, "\":", 2);
	log_out_open_quote(o);
	log_out_group(o, m);
	log_json_escaped(o, value);
	log_out_close_quote(o);
}

static void
log_json_line(struct log_out *o, const char *stamp, enum log_level level, const char *proc,
    pid_t pid, const char *msg, const char *const *fields, size_t nfields)
{
	struct log_mark m;
	char num[32];
	size_t i;

	log_out_end(o, "{", 1);
	log_json_member(o, true, "time", stamp);
	log_json_member(o, false, "level", log_level_valid(level) ? log_level_lower[level] : "unknown");
	log_json_member(o, false, "msg", msg);
	log_json_member(o, false, "proc", proc);

	/* Half a number would be a wrong pid, not a shorter one. */
	snprintf(num, sizeof(num), "%ld", (long)pid);
	m = log_out_mark(o);
	log_out_put(o, ",\"pid\":", 7);
	log_out_put(o, num, strlen(num));
	log_out_group(o, m);

	for (i = 0; i < nfields; i++) {
		if (fields[2 * i] != NULL && fields[2 * i + 1] != NULL)
			log_json_member(o, false, fields[2 * i], fields[2 * i + 1]);
	}
	log_out_close_str(o);
	log_out_end(o, "}\n", 2);
}

/* Where a piece of a text line goes, which decides what must be escaped. */
enum log_text_part {
	LOG_TEXT_MSG,
	LOG_TEXT_KEY,
	LOG_TEXT_QUOTED,
};

/*
 * Text escapes: control bytes always (a raw newline would forge a second
 * line); quotes and backslashes inside quotes, where they are syntax; in keys
 * whatever would end the key early, as keys are never quoted.
 */
static void
log_text_escaped(struct log_out *o, const char *s, enum log_text_part part)
{
	const unsigned char *p = (const unsigned char *)s;
	char esc[4] = { '\\', 'x', 0, 0 };
	bool quoted = part == LOG_TEXT_QUOTED;
	size_t n;

	while (*p != '\0') {
		if (quoted && *p == '"')
			log_out_put(o, "\\\"", 2);
		else if (quoted && *p == '\\')
			log_out_put(o, "\\\\", 2);
		else if (*p == '\n')
			log_out_put(o, "\\n", 2);
		else if (*p == '\r')
			log_out_put(o, "\\r", 2);
		else if (*p == '\t')
			log_out_put(o, "\\t", 2);
		else if (log_is_ctl(*p) ||
		    (part == LOG_TEXT_KEY && (*p == ' ' || *p == '=' || *p == '"'))) {
			esc[2] = log_hex[*p >> 4];
			esc[3] = log_hex[*p & 0xf];
			log_out_put(o, esc, sizeof(esc));
		} else {
			n = log_utf8_len(p);
			log_out_put(o, (const char *)p, n);
			p += n;
			continue;
		}
		p++;
	}
}

/* Quote what would otherwise not read back as one key=value token (logfmt). */
static bool
log_text_needs_quotes(const char *s)
{
	const unsigned char *p;

	if (*s == '\0')
		return true;
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == ' ' || *p == '"' || *p == '=' || log_is_ctl(*p))
			return true;
	}
	return false;
}

/*
 * The level is followed by one space, not padded to a common width: the
 * line then reads exactly as in DESIGN.md and stays easy to grep ("WARN b").
 */
static void
log_text_line(struct log_out *o, bool color, const char *stamp, enum log_level level,
    const char *msg, const char *const *fields, size_t nfields)
{
	const char *name = log_level_str(level);
	struct log_mark m;
	size_t i;
	bool quoted;

	log_out_put(o, stamp, strlen(stamp));

	/* Colour code, name and reset go together, never leaving a terminal coloured. */
	m = log_out_mark(o);
	log_out_put(o, " ", 1);
	color = color && log_level_valid(level);
	if (color)
		log_out_put(o, log_level_color[level], strlen(log_level_color[level]));
	log_out_put(o, name, strlen(name));
	if (color)
		log_out_put(o, LOG_COLOR_RESET, strlen(LOG_COLOR_RESET));
	log_out_group(o, m);

	if (*msg != '\0') {
		log_out_put(o, " ", 1);
		log_text_escaped(o, msg, LOG_TEXT_MSG);
	}

	for (i = 0; i < nfields; i++) {
		const char *key = fields[2 * i], *value = fields[2 * i + 1];

		if (key == NULL || value == NULL)
			continue;
		quoted = log_text_needs_quotes(value);
		m = log_out_mark(o);
		log_out_put(o, " ", 1);
		log_text_escaped(o, key, LOG_TEXT_KEY);
		log_out_put(o, "=", 1);
		if (quoted)
			log_out_open_quote(o);
		log_out_group(o, m);
		log_text_escaped(o, value, quoted ? LOG_TEXT_QUOTED : LOG_TEXT_MSG);
		if (quoted)
			log_out_close_quote(o);
	}
	log_out_close_str(o);
	log_out_end(o, "\n", 1);
}

static void
log_render(struct log_out *o, enum log_format format, bool color, const char *stamp,
    enum log_level level, const char *proc, pid_t pid, const char *msg,
    const char *const *fields, size_t nfields)
{
	if (format == LOG_FORMAT_JSON)
		log_json_line(o, stamp, level, proc, pid, msg, fields, nfields);
	else
		log_text_line(o, color, stamp, level, msg, fields, nfields);
}

/*
 * log_format_line() that also says how much it wrote. Lines that fit are
 * written in one pass; others are redone with room kept for the closing bytes.
 * The smallest cut lines are "\n" (text, buflen >= 2) and "{}\n" (JSON,
 * buflen >= 4); a JSON buffer of 2 or 3 bytes gets a bare "\n".
 */
static size_t
log_format_line_len(char *buf, size_t buflen, enum log_format format, bool color,
    const struct timespec *ts, enum log_level level, const char *proc, pid_t pid,
    const char *msg, const char *const *fields, size_t nfields, size_t *written)
{
	struct log_out o;
	char stamp[64], dummy;
	size_t need, min_cap, reserve;

	if (buflen == 0) {
		/* Still run the formatter to learn the length, as snprintf does. */
		buf = &dummy;
		buflen = 1;
	}
	if (proc == NULL || *proc == '\0')
		proc = LOG_PROC_DEFAULT;
	if (msg == NULL)
		msg = "";
	if (fields == NULL)
		nfields = 0;
	if (format != LOG_FORMAT_JSON)
		format = LOG_FORMAT_TEXT;
	log_format_time(stamp, sizeof(stamp), ts);

	log_out_init(&o, buf, buflen - 1, 0);
	log_render(&o, format, color, stamp, level, proc, pid, msg, fields, nfields);
	need = o.need;
	if (o.full) {
		/* Room for "}\n" or "\n", plus a closing quote while a string is open. */
		reserve = format == LOG_FORMAT_JSON ? 2 : 1;
		min_cap = format == LOG_FORMAT_JSON ? 3 : 1;
		log_out_init(&o, buf, buflen - 1, reserve);
		if (o.cap >= min_cap)
			log_render(&o, format, color, stamp, level, proc, pid, msg, fields, nfields);
		else if (o.cap >= 1)
			buf[o.pos++] = '\n';
	}
	buf[o.pos] = '\0';
	if (written != NULL)
		*written = o.pos;
	return need;
}

size_t
log_format_line(char *buf, size_t buflen, enum log_format format, bool color,
    const struct timespec *ts, enum log_level level, const char *proc, pid_t pid,
    const char *msg, const char *const *fields, size_t nfields)
{
	return log_format_line_len(buf, buflen, format, color, ts, level, proc, pid, msg,
	    fields, nfields, NULL);
}

/* NO_COLOR (no-color.org) counts only when set to a non-empty value. */
static bool
log_want_color(enum log_format format)
{
	const char *no_color = getenv("NO_COLOR");

	if (format != LOG_FORMAT_TEXT)
		return false;
	if (no_color != NULL && *no_color != '\0')
		return false;
	return isatty(STDERR_FILENO) == 1;
}

/* Both variables are checked before either is applied, so a bad one changes nothing. */
int
log_init_env(char *err, size_t errlen)
{
	enum log_level level = LOG_LEVEL_INFO;
	enum log_format format = LOG_FORMAT_TEXT;
	char why[256];
	const char *s;

	s = getenv("LOG_LEVEL");
	if (s != NULL && *s != '\0' && log_level_parse(s, &level, why, sizeof(why)) == -1) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "LOG_LEVEL: %s", why);
		return -1;
	}
	s = getenv("LOG_FORMAT");
	if (s != NULL && *s != '\0' && log_format_parse(s, &format, why, sizeof(why)) == -1) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "LOG_FORMAT: %s", why);
		return -1;
	}
	log_state.level = level;
	log_state.format = format;
	log_state.color = log_want_color(format);
	return 0;
}

/* Out-of-range values are ignored rather than silencing or flooding the log. */
void
log_set_level(enum log_level level)
{
	if (log_level_valid(level))
		log_state.level = level;
}

/* Colour is decided again because it only ever applies to text. */
void
log_set_format(enum log_format format)
{
	if (format != LOG_FORMAT_TEXT && format != LOG_FORMAT_JSON)
		return;
	log_state.format = format;
	log_state.color = log_want_color(format);
}

enum log_level
log_get_level(void)
{
	return log_state.level;
}

enum log_format
log_get_format(void)
{
	return log_state.format;
}

/* Copied, so callers may pass a temporary; too long a name is cut. */
void
log_set_proc(const char *proc)
{
	if (proc == NULL || *proc == '\0')
		proc = LOG_PROC_DEFAULT;
	strlcpy(log_state.proc, proc, sizeof(log_state.proc));
	/* Children name themselves right after fork: the moment to learn their pid. */
	log_access_pid = getpid();
}

bool
log_enabled(enum log_level level)
{
	return level >= log_state.level;
}

void
log_msg(enum log_level level, const char *msg, ...)
{
	va_list ap;

	/* Disabled levels cost one comparison: no va_start, no clock. */
	if (level < log_state.level)
		return;
	va_start(ap, msg);
	log_vmsg(level, msg, ap);
	va_end(ap);
}

/*
 * A NULL key ends the list; a NULL value is a field left out, so callers can
 * pass optional values directly. Pairs past LOG_MAX_FIELDS are dropped.
 */
void
log_vmsg(enum log_level level, const char *msg, va_list ap)
{
	const char *fields[2 * LOG_MAX_FIELDS];
	char line[LOG_LINE_MAX];
	struct timespec ts;
	const char *key, *value;
	size_t n = 0, len;
	int saved_errno;

	if (level < log_state.level)
		return;
	/* Callers log a failure and then report errno; logging must not change it. */
	saved_errno = errno;

	while ((key = va_arg(ap, const char *)) != NULL) {
		value = va_arg(ap, const char *);
		if (n < 2 * LOG_MAX_FIELDS) {
			fields[n++] = key;
			fields[n++] = value;
		}
	}
	if (clock_gettime(CLOCK_REALTIME, &ts) == -1) {
		ts.tv_sec = 0;
		ts.tv_nsec = 0;
	}
	/* getpid() each time: workers and checkers are forked after the first lines. */
	log_format_line_len(line, sizeof(line), log_state.format,
	    log_state.color && log_state.format == LOG_FORMAT_TEXT, &ts, level, log_state.proc,
	    getpid(), msg, fields, n / 2, &len);

	/*
	 * One write(2), retried only when interrupted: a partial second write could
	 * interleave with another process's line. Other failures have nowhere to go.
	 */
	while (write(STDERR_FILENO, line, len) == -1 && errno == EINTR)
		;
	errno = saved_errno;
}

/* The access-log buffer of this process. */
static struct {
	char buf[LOG_ACCESS_BUF];
	size_t len;
} log_access_state;

/*
 * Write buffered lines in pieces of at most PIPE_BUF bytes that end at a line
 * end: writes that size are atomic on a pipe, so lines of several workers
 * sharing one stderr pipe (journald) never interleave mid-line.
 */
void
log_flush(void)
{
	size_t off = 0;
	int saved_errno = errno;

	while (off < log_access_state.len) {
		size_t n = log_access_state.len - off;
		ssize_t w;

		if (n > PIPE_BUF) {
			n = PIPE_BUF;
			while (n > 0 && log_access_state.buf[off + n - 1] != '\n')
				n--;
			if (n == 0)
				n = PIPE_BUF;	/* one line longer than PIPE_BUF */
		}
		w = write(STDERR_FILENO, log_access_state.buf + off, n);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	log_access_state.len = 0;
	errno = saved_errno;
}

void
log_access(const char *key, ...)
{
	const char *fields[2 * LOG_MAX_FIELDS];
	char line[LOG_LINE_MAX];
	struct timespec ts;
	size_t n = 0, len;
	va_list ap;

	if (LOG_LEVEL_INFO < log_state.level)
		return;
	va_start(ap, key);
	for (; key != NULL; key = va_arg(ap, const char *)) {
		const char *value = va_arg(ap, const char *);

		if (n < 2 * LOG_MAX_FIELDS) {
			fields[n++] = key;
			fields[n++] = value;
		}
	}
	va_end(ap);
	if (clock_gettime(CLOCK_REALTIME, &ts) == -1)
		ts.tv_sec = ts.tv_nsec = 0;
	log_format_line_len(line, sizeof(line), log_state.format,
	    log_state.color && log_state.format == LOG_FORMAT_TEXT, &ts, LOG_LEVEL_INFO,
	    log_state.proc, log_access_pid != 0 ? log_access_pid : getpid(), "request", fields,
	    n / 2, &len);
	if (log_access_state.len + len > sizeof(log_access_state.buf))
		log_flush();
	memcpy(log_access_state.buf + log_access_state.len, line, len);
	log_access_state.len += len;
}
