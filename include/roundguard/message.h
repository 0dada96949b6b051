/* llhttp over evbuffers: head spans recorded in place, bodies counted, pauses at boundaries. */
#ifndef ROUNDGUARD_MESSAGE_H
#define ROUNDGUARD_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "roundguard/http.h"

struct evbuffer;

/*
 * One message being parsed (parser->data points here). The callbacks record
 * the head as spans (offsets from the message start) into head, refuse what
 * a proxy must not pass on (obs-fold, CR/LF/NUL in values, a value with no
 * name, too many fields: error_status 400/431), hold chunk extensions and
 * trailers to extra_max and the body to body_max (413), copy the body into
 * dechunk_to when set, and pause llhttp at the end of the head and at the end
 * of the message.
 */
struct message_parse {
	struct http_head *head;
	const char *ptr;	/* start of the piece being parsed */
	size_t off;		/* its offset from the start of the message */
	uint64_t body_len;
	uint64_t body_max;	/* 0 = no limit */
	uint64_t extra_len;	/* chunk extensions and trailers, held to the head limit */
	uint64_t extra_max;	/* 0 = no limit */
	struct evbuffer *dechunk_to;	/* response body goes here when de-chunking */
	int error_status;
	bool field_open;
	bool head_done;
	bool msg_done;
};

/* Callbacks for requests or responses. */
void message_settings(llhttp_settings_t *s, bool response);

/* Ready p for the next message, recording its head into head (limits zeroed). */
void message_reset(llhttp_t *p, struct message_parse *mp, struct http_head *head);

/*
 * Give llhttp the bytes of buf past *fed. It stops early at a pause (head or
 * message complete); *fed then says how far it got. With no new bytes, a
 * resumed parser may still complete a message without a body.
 */
llhttp_errno_t message_feed(llhttp_t *p, struct message_parse *mp, struct evbuffer *buf,
    size_t *fed);

#endif
