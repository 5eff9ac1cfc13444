/* One viewer's share of a frame, in one call: RTP headers, SRTP, the kernel.
 *
 * Built by streaming/rtp_send_build.py (cffi, API mode); the declarations
 * Python sees are the ones in that file. Used only by
 * streaming/aiortc_glue.py, which owns every pointer handed in here.
 *
 * The SRTP session is the viewer's own pylibsrtp session (the one aiortc's
 * DTLS transport keyed, which also protects its RTCP and RTX retransmits),
 * reached through pylibsrtp's own srtp_protect: the caller passes that
 * function's address, so one libsrtp instance keeps one sequence/ROC state.
 *
 * Packets of a frame go out with one sendmsg carrying UDP_SEGMENT (the
 * kernel cuts the datagrams: one pass through the stack for the whole
 * frame) when all but the last have one size, as packetized frames do;
 * otherwise, or where the kernel refuses segmentation offload, with one
 * sendmmsg. Everything here runs on the thread that calls it, without the
 * GIL; the scratch buffers are that thread's own.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

#define ZX_RTP_HEADER 12
#define ZX_TRAILER 144           /* SRTP_MAX_TRAILER_LEN: tag + MKI */
#define ZX_MAX_EXTENSIONS 64
#define ZX_GSO_SEGMENTS 64       /* UDP_MAX_SEGMENTS */
#define ZX_GSO_BYTES 65000       /* below a UDP datagram's 65507 */
#define ZX_NTP_UNIX_OFFSET 2208988800ULL
#define ZX_HISTORY 128          /* frames remembered per viewer, for NACK */
#define ZX_MAX_CNAME 64
#define ZX_REPORT_BYTES 512      /* SR + SDES + the SRTCP trailer */

#define ZX_SENT 0
#define ZX_FULL 1
#define ZX_ERROR 2

typedef int (*zx_protect_fn)(void *session, void *packet, int *length);

typedef struct {
    int fd;
    int gso;
    unsigned char address[28];
    unsigned int address_length;
    void *session;
    uint32_t ssrc;
    uint16_t sequence;
    uint8_t first_byte;
    uint8_t payload_type;
    uint8_t extensions[ZX_MAX_EXTENSIONS];
    int extensions_length;
    int abs_send_time_at;
    int sent;
    int consumed;
    long long octets;
    uint64_t ntp;
    int error;
    int status;
    uint32_t origin;
    uint32_t last_timestamp;
    unsigned long long packets_total;
    unsigned long long octets_total;
    unsigned long long frames_total;
    uint32_t history_frame[ZX_HISTORY];
    uint16_t history_first[ZX_HISTORY];
    uint16_t history_count[ZX_HISTORY];
    uint32_t history_timestamp[ZX_HISTORY];
    int history_next;
    uint8_t cname[ZX_MAX_CNAME];
    int cname_length;
} zx_viewer;

typedef struct {
    const unsigned char *data;
    const int *offsets;
    int count;
    int largest;
} zx_frame;

static __thread unsigned char *scratch;
static __thread size_t scratch_size;
static __thread struct mmsghdr *messages;
static __thread struct iovec *vectors;
static __thread int message_slots;

static int reserve(int count, size_t stride) {
    size_t size = (size_t)count * stride;
    if (size > scratch_size) {
        unsigned char *grown = realloc(scratch, size);
        if (grown == NULL)
            return -1;
        scratch = grown;
        scratch_size = size;
    }
    if (count > message_slots) {
        struct mmsghdr *m = realloc(messages, (size_t)count * sizeof *m);
        if (m == NULL)
            return -1;
        messages = m;
        struct iovec *v = realloc(vectors, (size_t)count * sizeof *v);
        if (v == NULL)
            return -1;
        vectors = v;
        message_slots = count;
    }
    return 0;
}

static int full(int error) {
    return error == EAGAIN || error == EWOULDBLOCK || error == ENOBUFS;
}

/* Send packets [first, first + count) as segments of one datagram send;
 * returns how many went (all or none), -1 with errno on failure. */
static int send_segmented(zx_viewer *v, int first, int count, int segment) {
    union {
        char bytes[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } control;
    struct msghdr message;
    memset(&message, 0, sizeof message);
    memset(&control, 0, sizeof control);
    message.msg_name = v->address;
    message.msg_namelen = v->address_length;
    message.msg_iov = vectors + first;
    message.msg_iovlen = count;
    message.msg_control = control.bytes;
    message.msg_controllen = sizeof control.bytes;
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_UDP;
    header->cmsg_type = UDP_SEGMENT;
    header->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t size = (uint16_t)segment;
    memcpy(CMSG_DATA(header), &size, sizeof size);
    if (sendmsg(v->fd, &message, 0) < 0)
        return -1;
    return count;
}

/* Sends packets [first, count) one datagram each; returns how many went
 * before the kernel refused one (errno set then), or count. */
static int send_each(zx_viewer *v, int first, int count) {
    int done = first;
    for (int i = first; i < count; i++) {
        memset(&messages[i].msg_hdr, 0, sizeof messages[i].msg_hdr);
        messages[i].msg_hdr.msg_name = v->address;
        messages[i].msg_hdr.msg_namelen = v->address_length;
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    while (done < count) {
        int n = sendmmsg(v->fd, messages + done, (unsigned int)(count - done), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return done - first;
        }
        done += n;
    }
    errno = 0;
    return done - first;
}

/* Whether packets [first, first + count) are all `segment` bytes but the
 * last, which may be shorter: then the kernel can cut them itself. */
static int segmentable(int first, int count, int segment) {
    for (int i = first; i < first + count - 1; i++)
        if ((int)vectors[i].iov_len != segment)
            return 0;
    return (int)vectors[first + count - 1].iov_len <= segment;
}

static int send_packets(zx_viewer *v, int count) {
    int done = 0;
    while (done < count && v->gso) {
        int segment = (int)vectors[done].iov_len;
        int chunk = count - done;
        int most = ZX_GSO_BYTES / segment;
        if (most > ZX_GSO_SEGMENTS)
            most = ZX_GSO_SEGMENTS;
        if (chunk > most)
            chunk = most;
        if (chunk < 2 || !segmentable(done, chunk, segment))
            break;
        if (send_segmented(v, done, chunk, segment) < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EIO || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOPROTOOPT) {
                v->gso = 0; /* no segmentation offload on this route: one by one */
                break;
            }
            return done;
        }
        done += chunk;
    }
    errno = 0;
    if (done < count)
        done += send_each(v, done, count);
    return done;
}

uint64_t zx_ntp_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return ((uint64_t)now.tv_sec + ZX_NTP_UNIX_OFFSET) << 32
        | (((uint64_t)now.tv_nsec << 32) / 1000000000ULL);
}

/* Remember which sequence numbers carried which frame (NACK → payloads). */
static void remember(zx_viewer *v, uint32_t frame_id, uint16_t first, int count,
                     uint32_t timestamp) {
    int at = v->history_next;
    v->history_frame[at] = frame_id;
    v->history_first[at] = first;
    v->history_count[at] = (uint16_t)count;
    v->history_timestamp[at] = timestamp;
    v->history_next = (at + 1) % ZX_HISTORY;
}

static int send_one(zx_viewer *v, zx_protect_fn protect, const zx_frame *frame,
                    uint32_t timestamp, uint32_t frame_id, uint64_t ntp) {
    int count = frame->count;
    v->sent = 0;
    v->consumed = 0;
    v->octets = 0;
    v->error = 0;
    if (count <= 0)
        return ZX_SENT;
    int head = ZX_RTP_HEADER + v->extensions_length;
    size_t stride = (size_t)(head + frame->largest + ZX_TRAILER + 15) & ~(size_t)15;
    if (reserve(count, stride) < 0) {
        v->error = ENOMEM;
        return ZX_ERROR;
    }
    v->ntp = ntp;
    if (v->abs_send_time_at >= 0) {
        /* abs-send-time: seconds in 6.18 fixed point, 24 bits. */
        uint32_t abs_send_time = (uint32_t)(ntp >> 14) & 0xFFFFFF;
        v->extensions[v->abs_send_time_at] = (uint8_t)(abs_send_time >> 16);
        v->extensions[v->abs_send_time_at + 1] = (uint8_t)(abs_send_time >> 8);
        v->extensions[v->abs_send_time_at + 2] = (uint8_t)abs_send_time;
    }
    uint16_t first = v->sequence;
    uint16_t sequence = first;
    int status = ZX_SENT;
    for (int i = 0; i < count; i++) {
        unsigned char *packet = scratch + (size_t)i * stride;
        int size = frame->offsets[i + 1] - frame->offsets[i];
        packet[0] = v->first_byte;
        packet[1] = (uint8_t)(v->payload_type | (i == count - 1 ? 0x80 : 0));
        packet[2] = (uint8_t)(sequence >> 8);
        packet[3] = (uint8_t)sequence;
        packet[4] = (uint8_t)(timestamp >> 24);
        packet[5] = (uint8_t)(timestamp >> 16);
        packet[6] = (uint8_t)(timestamp >> 8);
        packet[7] = (uint8_t)timestamp;
        packet[8] = (uint8_t)(v->ssrc >> 24);
        packet[9] = (uint8_t)(v->ssrc >> 16);
        packet[10] = (uint8_t)(v->ssrc >> 8);
        packet[11] = (uint8_t)v->ssrc;
        memcpy(packet + ZX_RTP_HEADER, v->extensions, (size_t)v->extensions_length);
        memcpy(packet + head, frame->data + frame->offsets[i], (size_t)size);
        int length = head + size;
        int error = protect(v->session, packet, &length);
        if (error != 0) {
            /* Nothing protected so far is sent: a packet cannot go out
             * unprotected, and a frame with a hole would not decode. */
            v->consumed = i;
            v->error = -error;
            status = ZX_ERROR;
            break;
        }
        vectors[i].iov_base = packet;
        vectors[i].iov_len = (size_t)length;
        sequence++;
    }
    /* Every sequence number protected is used up, sent or not: a number is
     * never protected twice with other contents (same keystream). */
    v->sequence = sequence;
    v->last_timestamp = timestamp;
    if (status == ZX_SENT) {
        v->consumed = count;
        int sent = send_packets(v, count);
        int error = errno;
        v->sent = sent;
        v->octets = frame->offsets[sent] - frame->offsets[0];
        if (sent != count) {
            v->error = error;
            status = full(error) ? ZX_FULL : ZX_ERROR;
        }
    }
    if (v->consumed > 0)
        remember(v, frame_id, first, v->consumed, timestamp);
    v->packets_total += (unsigned long long)v->sent;
    v->octets_total += (unsigned long long)v->octets;
    if (status == ZX_SENT)
        v->frames_total++;
    v->status = status;
    return status;
}

int zx_send_frame(zx_viewer *v, zx_protect_fn protect, const zx_frame *frame,
                  uint32_t timestamp, uint32_t frame_id) {
    return send_one(v, protect, frame, v->origin + timestamp, frame_id, zx_ntp_now());
}

int zx_send_group(zx_viewer **viewers, int count, zx_protect_fn protect,
                  const zx_frame *frame, uint32_t timestamp, uint32_t frame_id,
                  int *failed) {
    int failures = 0;
    uint64_t ntp = zx_ntp_now();
    for (int i = 0; i < count; i++) {
        zx_viewer *v = viewers[i];
        if (send_one(v, protect, frame, v->origin + timestamp, frame_id, ntp) != ZX_SENT)
            failed[failures++] = i;
    }
    return failures;
}

int zx_find_packet(const zx_viewer *v, uint16_t sequence, uint32_t *frame_id,
                   int *index, uint32_t *timestamp) {
    for (int i = 0; i < ZX_HISTORY; i++) {
        uint16_t offset = (uint16_t)(sequence - v->history_first[i]);
        if (offset < v->history_count[i]) {
            *frame_id = v->history_frame[i];
            *index = offset;
            *timestamp = v->history_timestamp[i];
            return 1;
        }
    }
    return 0;
}

static void put32(unsigned char *at, uint32_t value) {
    at[0] = (uint8_t)(value >> 24);
    at[1] = (uint8_t)(value >> 16);
    at[2] = (uint8_t)(value >> 8);
    at[3] = (uint8_t)value;
}

/* A sender report (RFC 3550 6.4.1, no report blocks) and the CNAME's SDES,
 * one compound packet; returns its length. */
static int build_report(const zx_viewer *v, unsigned char *packet) {
    packet[0] = 0x80;
    packet[1] = 200;
    packet[2] = 0;
    packet[3] = 6;
    put32(packet + 4, v->ssrc);
    put32(packet + 8, (uint32_t)(v->ntp >> 32));
    put32(packet + 12, (uint32_t)v->ntp);
    put32(packet + 16, v->last_timestamp);
    put32(packet + 20, (uint32_t)v->packets_total);
    put32(packet + 24, (uint32_t)v->octets_total);
    int length = 28;
    if (v->cname_length > 0 && v->cname_length <= ZX_MAX_CNAME) {
        unsigned char *sdes = packet + length;
        int chunk = 4 + 2 + v->cname_length + 1;  /* SSRC, item, one null octet */
        chunk = (chunk + 3) & ~3;                  /* nulls up to a 32-bit boundary */
        memset(sdes, 0, (size_t)(4 + chunk));
        sdes[0] = 0x81;                            /* one chunk */
        sdes[1] = 202;
        sdes[2] = (uint8_t)(((4 + chunk) / 4 - 1) >> 8);
        sdes[3] = (uint8_t)((4 + chunk) / 4 - 1);
        put32(sdes + 4, v->ssrc);
        sdes[8] = 1;                               /* CNAME */
        sdes[9] = (uint8_t)v->cname_length;
        memcpy(sdes + 10, v->cname, (size_t)v->cname_length);
        length += 4 + chunk;
    }
    return length;
}

int zx_send_reports(zx_viewer **viewers, int count, zx_protect_fn protect_rtcp,
                    int *failed) {
    unsigned char packet[ZX_REPORT_BYTES];
    int failures = 0;
    for (int i = 0; i < count; i++) {
        zx_viewer *v = viewers[i];
        int length = build_report(v, packet);
        int error = protect_rtcp(v->session, packet, &length);
        if (error != 0) {
            v->error = -error;
            failed[failures++] = i;
            continue;
        }
        ssize_t sent;
        do {
            sent = sendto(v->fd, packet, (size_t)length, 0,
                          v->address_length ? (const struct sockaddr *)v->address : NULL,
                          v->address_length);
        } while (sent < 0 && errno == EINTR);
        if (sent < 0) {
            v->error = errno;
            failed[failures++] = i;
        }
    }
    return failures;
}
