/*
 * Internal: a minimal FlatBuffers builder and verifying reader, in C, with no heap.
 * The builder writes back to front like flatbuffers::FlatBufferBuilder, into the caller's
 * region, so children come before parents and every uoffset points forward. With a NULL
 * region it only counts bytes (the sizing pass of the encoders).
 * The reader never trusts the buffer: every position it returns was checked against the length.
 */
#ifndef STARLING_SHIM_FB_H
#define STARLING_SHIM_FB_H

#include "starling_shim.h"

#define SHIM_FB_MAX_FIELDS 8u
/* Vtables remembered for reuse, as flatc's builder does: a batch's readings share two. */
#define SHIM_FB_VT_CACHE 4u
#define SHIM_FB_VT_MAX (4u + 2u * SHIM_FB_MAX_FIELDS)

typedef struct shim_fb_builder {
    uint8_t *end;     /* one past the region; NULL = sizing only */
    size_t cap;       /* region capacity */
    size_t size;      /* bytes written, growing down from end */
    size_t minalign;
    starling_shim_status status; /* first error wins */
    uint32_t field_at[SHIM_FB_MAX_FIELDS]; /* size when the field was written, 0 = absent */
    uint8_t nfields;  /* highest field id + 1 */
    size_t table_start_; /* size when the open table started */
    /* Recent vtables: bytes (kept here, not read back, so the sizing pass with no buffer
     * deduplicates exactly like the writing pass) and where each was written. */
    uint8_t vt_bytes[SHIM_FB_VT_CACHE][SHIM_FB_VT_MAX];
    uint32_t vt_at[SHIM_FB_VT_CACHE]; /* size just after it was pushed; 0 = empty slot */
    uint8_t vt_next;
} shim_fb_builder;

void shim_fb_init(shim_fb_builder *b, uint8_t *end, size_t cap);
uint32_t shim_fb_string(shim_fb_builder *b, const char *s, size_t n);
/* Vector of offsets; offsets[i] are results of shim_fb_end_table. */
uint32_t shim_fb_vector_of_tables(shim_fb_builder *b, const uint32_t *offsets, size_t n);
void shim_fb_start_table(shim_fb_builder *b);
void shim_fb_add_u8(shim_fb_builder *b, unsigned id, uint8_t v);
void shim_fb_add_u16(shim_fb_builder *b, unsigned id, uint16_t v);
void shim_fb_add_u32(shim_fb_builder *b, unsigned id, uint32_t v);
void shim_fb_add_u64(shim_fb_builder *b, unsigned id, uint64_t v);
void shim_fb_add_offset(shim_fb_builder *b, unsigned id, uint32_t off);
uint32_t shim_fb_end_table(shim_fb_builder *b);
/* Writes the root offset; the finished buffer is [end - size, end). */
void shim_fb_finish(shim_fb_builder *b, uint32_t root);

typedef struct shim_fb_reader {
    const uint8_t *buf;
    uint32_t len;
} shim_fb_reader;

typedef struct shim_fb_table {
    uint32_t pos;      /* table start */
    uint32_t vt;       /* vtable start */
    uint16_t vt_size;  /* bytes */
    uint16_t size;     /* inline table bytes */
} shim_fb_table;

uint16_t shim_fb_rd16(const uint8_t *p);
uint32_t shim_fb_rd32(const uint8_t *p);
uint64_t shim_fb_rd64(const uint8_t *p);
/* The root table; false if the buffer is not one. */
bool shim_fb_root(const shim_fb_reader *r, shim_fb_table *t);
/* Position of field id's inline data with `width` bytes inside the table, or 0 if absent.
 * *ok turns false if the vtable points outside the table. */
uint32_t shim_fb_field(const shim_fb_reader *r, const shim_fb_table *t, unsigned id,
                       uint32_t width, bool *ok);
#ifndef STARLING_SHIM_NO_COMMANDS
/* Follow the uoffset of field id to a sub-table / string / vector. Absent: returns false with
 * *ok untouched; malformed: returns false with *ok = false. */
bool shim_fb_table_field(const shim_fb_reader *r, const shim_fb_table *t, unsigned id,
                         shim_fb_table *out, bool *ok);
bool shim_fb_string_field(const shim_fb_reader *r, const shim_fb_table *t, unsigned id,
                          const char **s, uint32_t *n, bool *ok);
/* Vector of uoffsets: *elems is the position of element 0. */
bool shim_fb_vector_field(const shim_fb_reader *r, const shim_fb_table *t, unsigned id,
                          uint32_t *elems, uint32_t *count, bool *ok);
/* Element i of a vector of tables. */
bool shim_fb_vector_table(const shim_fb_reader *r, uint32_t elems, uint32_t i,
                          shim_fb_table *out);
#endif

#endif
