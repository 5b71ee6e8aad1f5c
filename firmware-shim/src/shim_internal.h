/* Internal declarations shared by the shim's translation units; not part of the API. */
#ifndef STARLING_SHIM_INTERNAL_H
#define STARLING_SHIM_INTERNAL_H

#include "starling_shim.h"

/* Receives the wire bytes of a frame, a few at a time; false stops the output. */
typedef bool (*shim_sink)(void *user, const uint8_t *p, size_t n);

/* Streams 0x00, COBS(header, payload, CRC-32), 0x00 through sink; returns the wire size.
 * payload_len <= STARLING_SHIM_MAX_PAYLOAD is the caller's check. */
size_t shim_frame_stream(uint8_t type, uint32_t link_seq, const uint8_t *payload,
                         size_t payload_len, shim_sink sink, void *user, bool *ok);

#endif
