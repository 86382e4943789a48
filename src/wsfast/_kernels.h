/* C kernels of wsfast._speedups: XOR masking and incremental UTF-8 validation.
 *
 * Portable: SSE2 on x86-64 and NEON on AArch64 are part of those baselines,
 * so no run-time dispatch and no -march flag is needed. Everything else uses
 * a 64-bit scalar loop that compilers vectorise on their own.
 */
#ifndef WSFAST_KERNELS_H
#define WSFAST_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__) || defined(_M_X64) || defined(_M_AMD64)
#include <emmintrin.h>
#define WSF_SSE2 1
#elif defined(__aarch64__) || defined(_M_ARM64)
#include <arm_neon.h>
#define WSF_NEON 1
#endif

/* dst[i] = src[i] ^ key[i % 4] for i < n; dst may be src (in-place). */
static inline void wsf_mask(unsigned char *dst, const unsigned char *src,
                            size_t n, const unsigned char key[4])
{
    uint32_t k32;
    uint64_t k64, v;
    size_t i = 0;

    memcpy(&k32, key, 4);
    k64 = ((uint64_t)k32 << 32) | k32;
#if defined(WSF_SSE2)
    if (n >= 32) {
        const __m128i k = _mm_set1_epi32((int)k32);
        for (; i + 64 <= n; i += 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(src + i + 32));
            __m128i d = _mm_loadu_si128((const __m128i *)(src + i + 48));
            _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, k));
            _mm_storeu_si128((__m128i *)(dst + i + 16), _mm_xor_si128(b, k));
            _mm_storeu_si128((__m128i *)(dst + i + 32), _mm_xor_si128(c, k));
            _mm_storeu_si128((__m128i *)(dst + i + 48), _mm_xor_si128(d, k));
        }
        for (; i + 16 <= n; i += 16) {
            __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
            _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, k));
        }
    }
#elif defined(WSF_NEON)
    if (n >= 32) {
        const uint8x16_t k = vreinterpretq_u8_u32(vdupq_n_u32(k32));
        for (; i + 64 <= n; i += 64) {
            uint8x16_t a = vld1q_u8(src + i);
            uint8x16_t b = vld1q_u8(src + i + 16);
            uint8x16_t c = vld1q_u8(src + i + 32);
            uint8x16_t d = vld1q_u8(src + i + 48);
            vst1q_u8(dst + i, veorq_u8(a, k));
            vst1q_u8(dst + i + 16, veorq_u8(b, k));
            vst1q_u8(dst + i + 32, veorq_u8(c, k));
            vst1q_u8(dst + i + 48, veorq_u8(d, k));
        }
        for (; i + 16 <= n; i += 16) {
            vst1q_u8(dst + i, veorq_u8(vld1q_u8(src + i), k));
        }
    }
#endif
    for (; i + 8 <= n; i += 8) {
        memcpy(&v, src + i, 8);
        v ^= k64;
        memcpy(dst + i, &v, 8);
    }
    /* i is a multiple of 8 here, so the key phase is unchanged. */
    if (i + 4 <= n) {
        uint32_t w;
        memcpy(&w, src + i, 4);
        w ^= k32;
        memcpy(dst + i, &w, 4);
        i += 4;
    }
    for (; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

/* Incremental UTF-8 validation (RFC 3629 section 4) with a shift-based DFA.
 *
 * A state is a multiple of 6 (its bit offset); row[c] packs, for every
 * state s, the state that byte c leads to in the 6 bits at offset s, so one
 * step is `state = (row[c] >> state) & 63`: a load that does not depend on
 * the state, a shift and a mask, with no branch. Runs of ASCII are skipped
 * 16 bytes at a time while the state is ACCEPT.
 *
 * The state is ERROR from the first byte that cannot continue a valid
 * prefix: that byte is the one reported, whether or not the sequence it
 * breaks is complete yet (fail fast, as Autobahn cases 6.4.x want). */

enum {
    WSF_ACCEPT = 0,  /* between characters */
    WSF_TAIL1 = 6,   /* one continuation byte (80..BF) to go */
    WSF_TAIL2 = 12,  /* two to go */
    WSF_TAIL3 = 18,  /* three to go */
    WSF_E0 = 24,     /* after E0: A0..BF, then one more (no overlong form) */
    WSF_ED = 30,     /* after ED: 80..9F, then one more (no surrogate) */
    WSF_F0 = 36,     /* after F0: 90..BF, then two more (no overlong form) */
    WSF_F4 = 42,     /* after F4: 80..8F, then two more (at most U+10FFFF) */
    WSF_ERROR = 48
};

typedef struct {
    unsigned int dfa;  /* one of the states above */
} wsf_utf8_state;

static uint64_t wsf_utf8_rows[256];

#define WSF_MOVE(from, to) ((uint64_t)(to) << (from))

/* Fill the transition table; call once before validating. */
static void wsf_utf8_init(void)
{
    int c;
    for (c = 0; c < 256; c++) {
        /* Every state not named goes to ERROR. */
        uint64_t row = 0;
        int from;
        for (from = WSF_ACCEPT; from <= WSF_ERROR; from += 6)
            row |= WSF_MOVE(from, WSF_ERROR);
#define WSF_SET(from, to) (row = (row & ~WSF_MOVE(from, 63)) | WSF_MOVE(from, to))
        if (c < 0x80) {
            WSF_SET(WSF_ACCEPT, WSF_ACCEPT);
        } else if (c < 0xC0) {  /* a continuation byte */
            WSF_SET(WSF_TAIL1, WSF_ACCEPT);
            WSF_SET(WSF_TAIL2, WSF_TAIL1);
            WSF_SET(WSF_TAIL3, WSF_TAIL2);
            if (c >= 0xA0)
                WSF_SET(WSF_E0, WSF_TAIL1);
            if (c <= 0x9F)
                WSF_SET(WSF_ED, WSF_TAIL1);
            if (c >= 0x90)
                WSF_SET(WSF_F0, WSF_TAIL2);
            if (c <= 0x8F)
                WSF_SET(WSF_F4, WSF_TAIL2);
        } else if (c >= 0xC2 && c <= 0xDF) {
            WSF_SET(WSF_ACCEPT, WSF_TAIL1);
        } else if (c == 0xE0) {
            WSF_SET(WSF_ACCEPT, WSF_E0);
        } else if (c == 0xED) {
            WSF_SET(WSF_ACCEPT, WSF_ED);
        } else if (c >= 0xE1 && c <= 0xEF) {
            WSF_SET(WSF_ACCEPT, WSF_TAIL2);
        } else if (c == 0xF0) {
            WSF_SET(WSF_ACCEPT, WSF_F0);
        } else if (c >= 0xF1 && c <= 0xF3) {
            WSF_SET(WSF_ACCEPT, WSF_TAIL3);
        } else if (c == 0xF4) {
            WSF_SET(WSF_ACCEPT, WSF_F4);
        }
#undef WSF_SET
        wsf_utf8_rows[c] = row;
    }
}

#define WSF_STEP(state, c) ((unsigned int)(wsf_utf8_rows[(c)] >> (state)) & 63)
#define WSF_ASCII_MASK 0x8080808080808080ULL
#define WSF_BLOCK 256

/* Run the DFA over s[i:end] from `state`; return the state after it. Two
 * independent halves go through in lockstep, so the shift chains of both
 * overlap: the second half starts at a character boundary (a byte that is
 * not a continuation byte), in ACCEPT. A half that ends anywhere but where
 * the other starts, in ACCEPT, yields ERROR: the caller then finds the bad
 * byte one byte at a time. */
static inline unsigned int wsf_utf8_run(unsigned int state, const unsigned char *s,
                                        size_t i, size_t end)
{
    size_t mid = i + (end - i) / 2, k, n1, n2;
    unsigned int other = WSF_ACCEPT;

    while (mid < end && (s[mid] & 0xC0) == 0x80 && mid < i + (end - i) / 2 + 4)
        mid++;
    if (mid >= end || (s[mid] & 0xC0) == 0x80 || end - i < 32) {
        for (k = i; k < end; k++)
            state = WSF_STEP(state, s[k]);
        return state;
    }
    n1 = mid - i;
    n2 = end - mid;
    for (k = 0; k < n1 && k < n2; k++) {
        state = WSF_STEP(state, s[i + k]);
        other = WSF_STEP(other, s[mid + k]);
    }
    for (; k < n1; k++)
        state = WSF_STEP(state, s[i + k]);
    for (; k < n2; k++)
        other = WSF_STEP(other, s[mid + k]);
    return state == WSF_ACCEPT ? other : WSF_ERROR;
}

/* Validate s[0:n] as the continuation of the text `st` describes.
 * Returns -1 if every byte is acceptable (st then describes the text up to
 * s[n]), or the index of the first bad byte. */
static inline ptrdiff_t wsf_utf8_feed(wsf_utf8_state *st,
                                      const unsigned char *s, size_t n)
{
    size_t i = 0, end, j;
    unsigned int state = st->dfa, after;
    uint64_t a, b;

    if (state == WSF_ERROR)
        return 0;
    while (i < n) {
        if (state == WSF_ACCEPT) {
#if defined(WSF_SSE2)
            while (i + 64 <= n) {
                __m128i v = _mm_or_si128(
                    _mm_or_si128(_mm_loadu_si128((const __m128i *)(s + i)),
                                 _mm_loadu_si128((const __m128i *)(s + i + 16))),
                    _mm_or_si128(_mm_loadu_si128((const __m128i *)(s + i + 32)),
                                 _mm_loadu_si128((const __m128i *)(s + i + 48))));
                if (_mm_movemask_epi8(v))
                    break;
                i += 64;
            }
#endif
            while (i + 16 <= n) {
                memcpy(&a, s + i, 8);
                memcpy(&b, s + i + 8, 8);
                if ((a | b) & WSF_ASCII_MASK)
                    break;
                i += 16;
            }
            if (i == n)
                break;
        }
        end = i + WSF_BLOCK < n ? i + WSF_BLOCK : n;
        after = wsf_utf8_run(state, s, i, end);
        if (after == WSF_ERROR) {
            for (j = i; j < end; j++) {
                state = WSF_STEP(state, s[j]);
                if (state == WSF_ERROR) {
                    st->dfa = WSF_ERROR;
                    return (ptrdiff_t)j;
                }
            }
            after = state;  /* not reached: the block had an error */
        }
        state = after;
        i = end;
    }
    st->dfa = state;
    return -1;
}

#endif /* WSFAST_KERNELS_H */
