/* The codecs under the image formats: CRC-32 and Adler-32, DEFLATE in both directions, and the
 * zlib and gzip containers. Every decoder treats its input as hostile: lengths are checked before
 * use and output sizes are bounded by the mae_bytes limit. Nothing here knows about images. */
#ifndef MAE_CODEC_H
#define MAE_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include "mae.h"
#include "../util/bytes.h"

/* ---- checksums (crc.c) ------------------------------------------------------------------- */

/* Running CRC-32 (ISO-HDLC, as PNG and gzip use): start with crc = 0. */
uint32_t mae_crc32(uint32_t crc, const uint8_t *p, size_t n);
/* Running Adler-32 (zlib): start with adler = 1. */
uint32_t mae_adler32(uint32_t adler, const uint8_t *p, size_t n);

/* ---- DEFLATE (inflate.c, deflate.c) --------------------------------------------------------- */

/* Decodes one raw DEFLATE stream (RFC 1951) from in[0..n) and appends it to out. *used gets the
 * bytes consumed (the stream ends on a byte boundary after its last block). Back references may
 * reach only into bytes this call produced. */
mae_status mae_inflate(const uint8_t *in, size_t n, size_t *used, mae_bytes *out);

/* Compresses in[0..n) to a raw DEFLATE stream appended to out: LZ77 with hash chains, each block
 * stored, fixed- or dynamic-Huffman, whichever is smallest. */
mae_status mae_deflate(const uint8_t *in, size_t n, mae_bytes *out);

/* ---- containers (zlib.c) -------------------------------------------------------------------- */

/* zlib stream (RFC 1950): header checked (method 8, window <= 32K, no preset dictionary, FCHECK),
 * Adler-32 checked; the whole of in must be the stream. Output appended to out. */
mae_status mae_zlib_decompress(const uint8_t *in, size_t n, mae_bytes *out);
mae_status mae_zlib_compress(const uint8_t *in, size_t n, mae_bytes *out);
/* gzip file (RFC 1952), one or more members: header fields, the optional header CRC, the CRC-32
 * and ISIZE of every member checked; nothing may follow the last member. */
mae_status mae_gzip_decompress(const uint8_t *in, size_t n, mae_bytes *out);
mae_status mae_gzip_compress(const uint8_t *in, size_t n, mae_bytes *out);

#endif
