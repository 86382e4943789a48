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

/* State of an incremental UTF-8 validator (RFC 3629 section 4):
 * `need` continuation bytes are still expected; the next one must lie in
 * [lo, hi] (only the byte after a lead byte has a narrower range). */
typedef struct {
    unsigned char need;
    unsigned char lo;
    unsigned char hi;
} wsf_utf8_state;

#define WSF_ASCII_MASK 0x8080808080808080ULL

/* Validate s[0:n] as the continuation of the text `st` describes.
 * Returns -1 if every byte is acceptable (st then describes the text up to
 * s[n]), or the index of the first bad byte. Once in the multi-byte path it
 * stays there until 16 ASCII bytes in a row are seen, so that Cyrillic or CJK
 * text does not bounce in and out of the ASCII fast path. */
static inline ptrdiff_t wsf_utf8_feed(wsf_utf8_state *st,
                                      const unsigned char *s, size_t n)
{
    size_t i = 0;
    unsigned int need = st->need, lo = st->lo, hi = st->hi, c, run;
    uint64_t a, b;

    while (need) {
        if (i == n)
            goto save;
        c = s[i];
        if (c < lo || c > hi)
            return (ptrdiff_t)i;
        lo = 0x80;
        hi = 0xBF;
        need--;
        i++;
    }
ascii:
    while (i + 16 <= n) {
        memcpy(&a, s + i, 8);
        memcpy(&b, s + i + 8, 8);
        if ((a | b) & WSF_ASCII_MASK)
            break;
        i += 16;
    }
    run = 0;
    while (i < n) {
        c = s[i];
        if (c < 0x80) {
            i++;
            if (++run >= 16)
                goto ascii;
            continue;
        }
        run = 0;
        if (c < 0xC2) {
            return (ptrdiff_t)i;
        } else if (c < 0xE0) {
            need = 1;
            lo = 0x80;
            hi = 0xBF;
        } else if (c < 0xF0) {
            need = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c < 0xF5) {
            need = 3;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        } else {
            return (ptrdiff_t)i;
        }
        i++;
        if (i + need <= n) {
            c = s[i];
            if (c < lo || c > hi)
                return (ptrdiff_t)i;
            if (need >= 2) {
                if ((s[i + 1] & 0xC0) != 0x80)
                    return (ptrdiff_t)(i + 1);
                if (need == 3 && (s[i + 2] & 0xC0) != 0x80)
                    return (ptrdiff_t)(i + 2);
            }
            i += need;
            need = 0;
        } else {
            /* The sequence continues in the next fragment: check what is here. */
            while (i < n) {
                c = s[i];
                if (c < lo || c > hi)
                    return (ptrdiff_t)i;
                lo = 0x80;
                hi = 0xBF;
                need--;
                i++;
            }
            goto save;
        }
    }
    need = 0;
save:
    st->need = (unsigned char)need;
    st->lo = (unsigned char)lo;
    st->hi = (unsigned char)hi;
    return -1;
}

#endif /* WSFAST_KERNELS_H */
