/* Leveled, structured logging to stderr: human text or one JSON object per line. */
#ifndef ROUNDGUARD_LOG_H
#define ROUNDGUARD_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

enum log_level {
	LOG_LEVEL_TRACE,
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
};

enum log_format {
	LOG_FORMAT_TEXT,
	LOG_FORMAT_JSON,
};

/* Upper-case name as printed in text lines ("WARN"); lower-case in JSON ("warn"). */
const char *log_level_str(enum log_level level);
const char *log_format_str(enum log_format format);

/*
 * Parse a level name, case-insensitively: trace, debug, info, warn, error, and
 * the aliases warning (= warn), fatal and panic (= error). 0 on success, -1 with
 * a message naming the valid values in err.
 */
int log_level_parse(const char *s, enum log_level *out, char *err, size_t errlen);
/* Parse "text" or "json" (case-insensitive). 0 / -1 as above. */
int log_format_parse(const char *s, enum log_format *out, char *err, size_t errlen);

/*
 * Format one complete log line (ending in '\n') into buf. fields holds nfields
 * key/value pairs (fields[2i] is a key, fields[2i+1] its value; a NULL value
 * is skipped). Text: "2026-11-27T05:52:28.123Z WARN msg key=value key2=\"a b\"",
 * values quoted and escaped when they hold spaces, quotes, '=' or control bytes;
 * color adds ANSI colour to the level. JSON: {"time":..,"level":..,"msg":..,
 * "proc":..,"pid":..,<fields>} with every string escaped so that the line is
 * always one valid JSON object. Returns the length the full line needs (like
 * snprintf); a line longer than buflen is cut short but still ends in '\n'
 * (JSON: still a valid object, with the message or values truncated).
 */
size_t log_format_line(char *buf, size_t buflen, enum log_format format, bool color,
    const struct timespec *ts, enum log_level level, const char *proc, pid_t pid,
    const char *msg, const char *const *fields, size_t nfields);

/* RFC 3339 UTC with milliseconds, "2026-11-27T05:52:28.123Z"; buf needs 25 bytes. */
void log_format_time(char *buf, size_t buflen, const struct timespec *ts);

/*
 * Process-wide settings. log_init_env() reads LOG_LEVEL and LOG_FORMAT; on an
 * invalid value it returns -1 with err naming the variable and the valid values.
 * Colour is used for text when stderr is a terminal.
 */
int log_init_env(char *err, size_t errlen);
void log_set_level(enum log_level level);
void log_set_format(enum log_format format);
enum log_level log_get_level(void);
enum log_format log_get_format(void);
/* Name of this process in JSON lines: "master", "worker", "checker", "echo". */
void log_set_proc(const char *proc);
bool log_enabled(enum log_level level);

/*
 * Write one line at level with NULL-terminated key, value, key, value, ...
 * string pairs: log_msg(LOG_LEVEL_WARN, "backend down", "backend", "h:p",
 * "reason", "timeout", NULL). One write(2) per line.
 */
void log_msg(enum log_level level, const char *msg, ...);
void log_vmsg(enum log_level level, const char *msg, va_list ap);

/*
 * One access-log line ("request" at info) with NULL-terminated key/value
 * pairs, kept in a per-process buffer: log_flush() writes it out, as does a
 * full buffer. Callers flush at least every 100 ms and at exit.
 */
void log_access(const char *key, ...);
void log_flush(void);

#define log_trace(...) log_msg(LOG_LEVEL_TRACE, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
