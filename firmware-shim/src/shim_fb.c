/* Minimal FlatBuffers builder and verifying reader; see shim_fb.h. Wire format reference:
 * https://flatbuffers.dev/md__internals.html (little-endian scalars, uoffset_t = uint32 pointing
 * forward, soffset_t = int32 from a table back to its vtable, voffset_t = uint16). */
#include "shim_fb.h"

#include <string.h>

/* ---- builder ---- */

void shim_fb_init(shim_fb_builder *b, uint8_t *end, size_t cap)
{
    memset(b, 0, sizeof *b);
    b->end = end;
    b->cap = end ? cap : (size_t)-1;
    b->minalign = 1;
}

/* Counts always; writes only while within capacity, so a failed pass still reports the size
 * needed. */
static void push(shim_fb_builder *b, const uint8_t *p, size_t n)
{
    if (b->end && n <= b->cap && b->size <= b->cap - n) {
        if (p) {
            memcpy(b->end - b->size - n, p, n);
        } else {
            memset(b->end - b->size - n, 0, n);
        }
    }
    b->size += n;
}

static void write_le32_at(shim_fb_builder *b, size_t dist, uint32_t v)
{
    if (b->end && dist <= b->cap && dist >= 4) {
        uint8_t *p = b->end - dist;
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
    }
}

/* Pad so that an object of len bytes pushed next ends aligned (FlatBufferBuilder::PreAlign). */
static void pre_align(shim_fb_builder *b, size_t len, size_t alignment)
{
    if (alignment > b->minalign) {
        b->minalign = alignment;
    }
    push(b, NULL, (size_t)(0u - (b->size + len)) & (alignment - 1u));
}

static void push_le(shim_fb_builder *b, uint64_t v, size_t width)
{
    uint8_t tmp[8];
    size_t i;
    pre_align(b, width, width);
    for (i = 0; i < width; ++i) {
        tmp[i] = (uint8_t)(v >> (8u * i));
    }
    push(b, tmp, width);
}

/* Distance-from-end handle -> forward uoffset written at the next 4 bytes. */
static void push_ref(shim_fb_builder *b, uint32_t off)
{
    pre_align(b, 4, 4);
    push_le(b, (uint64_t)(b->size + 4u - off), 4);
}

uint32_t shim_fb_string(shim_fb_builder *b, const char *s, size_t n)
{
    pre_align(b, n + 1u, 4);
    push(b, NULL, 1); /* NUL terminator, required by the format */
    push(b, (const uint8_t *)s, n);
    push_le(b, n, 4);
    return (uint32_t)b->size;
}

uint32_t shim_fb_vector_of_tables(shim_fb_builder *b, const uint32_t *offsets, size_t n)
{
    size_t i;
    pre_align(b, n * 4u, 4);
    for (i = n; i-- > 0;) {
        push_ref(b, offsets[i]);
    }
    push_le(b, n, 4);
    return (uint32_t)b->size;
}

void shim_fb_start_table(shim_fb_builder *b)
{
    memset(b->field_at, 0, sizeof b->field_at);
    b->nfields = 0;
    /* The table's inline part starts here; end_table measures from this size. */
    b->field_at[0] = 0;
    b->minalign = b->minalign < 4 ? 4 : b->minalign;
    b->table_start_ = b->size;
}

static void mark_field(shim_fb_builder *b, unsigned id)
{
    b->field_at[id] = (uint32_t)b->size;
    if (id + 1u > b->nfields) {
        b->nfields = (uint8_t)(id + 1u);
    }
}

void shim_fb_add_u8(shim_fb_builder *b, unsigned id, uint8_t v)
{
    push_le(b, v, 1);
    mark_field(b, id);
}

void shim_fb_add_u16(shim_fb_builder *b, unsigned id, uint16_t v)
{
    push_le(b, v, 2);
    mark_field(b, id);
}

void shim_fb_add_u32(shim_fb_builder *b, unsigned id, uint32_t v)
{
    push_le(b, v, 4);
    mark_field(b, id);
}

void shim_fb_add_u64(shim_fb_builder *b, unsigned id, uint64_t v)
{
    push_le(b, v, 8);
    mark_field(b, id);
}

void shim_fb_add_offset(shim_fb_builder *b, unsigned id, uint32_t off)
{
    push_ref(b, off);
    mark_field(b, id);
}

uint32_t shim_fb_end_table(shim_fb_builder *b)
{
    uint8_t vt[4u + 2u * SHIM_FB_MAX_FIELDS];
    size_t table_at;
    size_t vt_size = 4u + 2u * (size_t)b->nfields;
    size_t i;

    push_le(b, 0, 4); /* soffset to the vtable, patched below */
    table_at = b->size;
    vt[0] = (uint8_t)vt_size;
    vt[1] = 0;
    vt[2] = (uint8_t)(table_at - b->table_start_);
    vt[3] = (uint8_t)((table_at - b->table_start_) >> 8);
    for (i = 0; i < b->nfields; ++i) {
        size_t fo = b->field_at[i] ? table_at - b->field_at[i] : 0u;
        vt[4u + 2u * i] = (uint8_t)fo;
        vt[5u + 2u * i] = (uint8_t)(fo >> 8);
    }
    /* An identical vtable written before (at a higher address) is shared: soffset < 0. */
    for (i = 0; i < SHIM_FB_VT_CACHE; ++i) {
        if (b->vt_at[i] && b->vt_bytes[i][0] == vt[0] && memcmp(b->vt_bytes[i], vt, vt_size) == 0) {
            write_le32_at(b, table_at, (uint32_t)b->vt_at[i] - (uint32_t)table_at);
            return (uint32_t)table_at;
        }
    }
    /* vt_size is even and table_at a multiple of 4: the vtable lands 2-aligned. */
    push(b, vt, vt_size);
    /* The vtable sits just below the table: table - soffset = vtable, so soffset > 0. */
    write_le32_at(b, table_at, (uint32_t)(b->size - table_at));
    memcpy(b->vt_bytes[b->vt_next], vt, vt_size);
    b->vt_at[b->vt_next] = (uint32_t)b->size;
    b->vt_next = (uint8_t)((b->vt_next + 1u) % SHIM_FB_VT_CACHE);
    return (uint32_t)table_at;
}

void shim_fb_finish(shim_fb_builder *b, uint32_t root)
{
    pre_align(b, 4, b->minalign);
    push_ref(b, root);
    if (b->size > b->cap) {
        b->status = STARLING_SHIM_E_NO_SPACE;
    }
}

/* ---- reader ---- */

uint16_t shim_fb_rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

uint32_t shim_fb_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

uint64_t shim_fb_rd64(const uint8_t *p)
{
    return (uint64_t)shim_fb_rd32(p) | ((uint64_t)shim_fb_rd32(p + 4) << 32);
}

/* Checks a table at pos and its vtable; all arithmetic in 64 bits so nothing wraps. */
static bool check_table(const shim_fb_reader *r, uint64_t pos, shim_fb_table *t)
{
    int64_t vt;
    uint16_t vt_size, size;
    if (r->len < 4u || pos > (uint64_t)r->len - 4u) {
        return false;
    }
    vt = (int64_t)pos - (int64_t)(int32_t)shim_fb_rd32(r->buf + pos);
    if (vt < 0 || (uint64_t)vt > (uint64_t)r->len - 4u) {
        return false;
    }
    vt_size = shim_fb_rd16(r->buf + vt);
    size = shim_fb_rd16(r->buf + vt + 2);
    if (vt_size < 4u || (vt_size & 1u) || (uint64_t)vt + vt_size > r->len || size < 4u ||
        pos + size > r->len) {
        return false;
    }
    t->pos = (uint32_t)pos;
    t->vt = (uint32_t)vt;
    t->vt_size = vt_size;
    t->size = size;
    return true;
}

bool shim_fb_root(const shim_fb_reader *r, shim_fb_table *t)
{
    if (r->len < 4u) {
        return false;
    }
    return check_table(r, shim_fb_rd32(r->buf), t);
}

uint32_t shim_fb_field(const shim_fb_reader *r, const shim_fb_table *t, unsigned id,
                       uint32_t width, bool *ok)
{
    uint32_t slot = 4u + 2u * id;
    uint16_t fo;
    if (slot + 2u > t->vt_size) {
        return 0; /* field newer than the writer: absent (schema evolution) */
    }
    fo = shim_fb_rd16(r->buf + t->vt + slot);
    if (fo == 0) {
        return 0;
    }
    if (fo < 4u || (uint32_t)fo + width > t->size) {
        *ok = false;
        return 0;
    }
    return t->pos + fo;
}

#ifndef STARLING_SHIM_NO_COMMANDS

/* Follows the uoffset at `at` (4 bytes known to be in bounds). */
static uint64_t deref(const shim_fb_reader *r, uint32_t at)
{
    return (uint64_t)at + shim_fb_rd32(r->buf + at);
}

bool shim_fb_table_field(const shim_fb_reader *r, const shim_fb_table *t, unsigned id,
                         shim_fb_table *out, bool *ok)
{
    uint32_t at = shim_fb_field(r, t, id, 4, ok);
    if (!at) {
        return false;
    }
    if (!check_table(r, deref(r, at), out)) {
        *ok = false;
        return false;
    }
    return true;
}

bool shim_fb_string_field(const shim_fb_reader *r, const shim_fb_table *t, unsigned id,
                          const char **s, uint32_t *n, bool *ok)
{
    uint64_t target;
    uint32_t len;
    uint32_t at = shim_fb_field(r, t, id, 4, ok);
    if (!at) {
        return false;
    }
    target = deref(r, at);
    if (target + 4u > r->len) {
        *ok = false;
        return false;
    }
    len = shim_fb_rd32(r->buf + target);
    if (target + 4u + len + 1u > r->len || r->buf[target + 4u + len] != 0) {
        *ok = false;
        return false;
    }
    *s = (const char *)(r->buf + target + 4u);
    *n = len;
    return true;
}

bool shim_fb_vector_field(const shim_fb_reader *r, const shim_fb_table *t, unsigned id,
                          uint32_t *elems, uint32_t *count, bool *ok)
{
    uint64_t target;
    uint32_t n;
    uint32_t at = shim_fb_field(r, t, id, 4, ok);
    if (!at) {
        return false;
    }
    target = deref(r, at);
    if (target + 4u > r->len) {
        *ok = false;
        return false;
    }
    n = shim_fb_rd32(r->buf + target);
    if (target + 4u + (uint64_t)n * 4u > r->len) {
        *ok = false;
        return false;
    }
    *elems = (uint32_t)(target + 4u);
    *count = n;
    return true;
}

bool shim_fb_vector_table(const shim_fb_reader *r, uint32_t elems, uint32_t i,
                          shim_fb_table *out)
{
    /* Caller got elems/count from shim_fb_vector_field, so element i is in bounds. */
    uint32_t at = elems + 4u * i;
    return check_table(r, deref(r, at), out);
}

#endif /* STARLING_SHIM_NO_COMMANDS */
